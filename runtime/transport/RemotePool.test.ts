/**
 * A module located by a DNS name, over real connections: two instances of a toy module served on
 * one port at two loopback addresses (127.0.0.1 and 127.0.0.2), and a resolver the test sets.
 * The set follows the name's answers (instances added and drained), a failed resolution keeps the
 * last good set, and a lost connection asks for a resolution at once.
 */
import { Rpc, type RpcClient, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schema, Scope } from "effect"
import type * as Balancer from "../resilience/Balancer.ts"
import * as CircuitBreaker from "../resilience/CircuitBreaker.ts"
import * as Policy from "../resilience/Policy.ts"
import * as Lane from "../testing/Lane.ts"
import type { CallError } from "./CallError.ts"
import * as Client from "./Client.ts"
import { Idempotent } from "./Idempotent.ts"
import * as RemotePool from "./RemotePool.ts"

class WhoRpcs extends RpcGroup.make(Rpc.make("who", { success: Schema.String }).annotate(Idempotent, true)) {}

const instance = (name: string) => WhoRpcs.toLayer({ who: () => Effect.succeed(name) })

const until = async (check: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting")
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe("a module located by a DNS name", () => {
  let one: Lane.Served
  let two: Lane.Served | undefined
  let port: number
  const scope = Effect.runSync(Scope.make())
  /** What the fake name resolves to; a string is an error it fails with. */
  let answer: ReadonlyArray<string> | string = ["127.0.0.1"]
  let resolutions = 0
  let pool: { readonly balancer: Balancer.Balancer; readonly refresh: Effect.Effect<void> }
  let client: RpcClient.RpcClient<RpcGroup.Rpcs<typeof WhoRpcs>, CallError>

  beforeAll(async () => {
    one = await Lane.serve("who", WhoRpcs, instance("one"))
    port = Number(new URL(one.url).port)
    two = await Lane.serve("who", WhoRpcs, instance("two"), { host: "127.0.0.2", port })
    const registry = new Policy.Registry()
    const dependency = registry.dependency("who", Policy.defaults)
    const made = await Effect.runPromise(
      RemotePool.make("who", WhoRpcs, { _tag: "Dns", host: "who.test", port, path: "" }, {
        secret: Lane.secret,
        caller: "tests",
        breaker: (url) => CircuitBreaker.make(url, Policy.defaults.breaker),
        resolver: async (host) => {
          expect(host).toBe("who.test")
          resolutions++
          if (typeof answer === "string") throw new Error(answer)
          return answer
        },
        // Only the test (and failing connections) ask for a resolution.
        refresh: "1 hour",
        interceptors: [...Client.standard, Policy.protectInstances(dependency)]
      }).pipe(Scope.extend(scope))
    )
    pool = made
    client = made.client
  })
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await one?.close()
    await two?.close()
  })

  const members = () => pool.balancer.members().map((m) => `${m.url}${m.connected ? "" : " (dialling)"}`)
  const calls = async (n: number) => {
    const seen: Record<string, number> = {}
    for (let i = 0; i < n; i++) {
      const who = await Effect.runPromise(client.who())
      seen[who] = (seen[who] ?? 0) + 1
    }
    return seen
  }

  it("starts with the instances the name resolves to", async () => {
    expect(members()).toEqual([`http://127.0.0.1:${port}`])
    expect(await calls(4)).toEqual({ one: 4 })
  })

  it("adds an instance that appears, and spreads the calls over both once it is connected", async () => {
    answer = ["127.0.0.2", "127.0.0.1"]
    await Effect.runPromise(pool.refresh)
    await until(() => pool.balancer.members().every((m) => m.connected) && pool.balancer.members().length === 2)
    expect(members()).toEqual([`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`])
    expect(await calls(10)).toEqual({ one: 5, two: 5 })
  })

  it("keeps the last good set when the name does not resolve", async () => {
    answer = "queryA ETIMEOUT who.test"
    await Effect.runPromise(pool.refresh)
    expect(members()).toEqual([`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`])
    expect(await calls(4)).toEqual({ one: 2, two: 2 })
  })

  it("drains an instance that disappears: it gets no more calls", async () => {
    answer = ["127.0.0.2"]
    await Effect.runPromise(pool.refresh)
    expect(members()).toEqual([`http://127.0.0.2:${port}`])
    expect(await calls(4)).toEqual({ two: 4 })
    // Nothing was in flight: it is gone at once, its connection closed.
    expect((await Effect.runPromise(pool.balancer.views)).map((v) => v.url)).toEqual([`http://127.0.0.2:${port}`])
  })

  it("resolves again as soon as a connection is lost, long before the next refresh", async () => {
    answer = ["127.0.0.1"]
    const before = resolutions
    await two!.close()
    two = undefined
    await until(() => resolutions > before)
    await until(() => members().join() === `http://127.0.0.1:${port}`)
    expect(await calls(3)).toEqual({ one: 3 })
  })
})
