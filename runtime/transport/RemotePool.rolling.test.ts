/**
 * A rolling restart of a module's two instances under a steady load of calls, as a deployment
 * does one: an instance stopped gracefully (its calls in flight finish, new ones are refused
 * ShuttingDown, then its connections close), started again on its port, and once it serves the
 * other one stopped the same way. With one instance serving at every moment, no call fails:
 * each is retried as the order saga retries a charge (a few times, backing off from 100 ms),
 * and the pool sends it to an instance that serves.
 */
import { Rpc, type RpcClient, RpcGroup } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schedule, Schema, Scope } from "effect"
import * as Policy from "../resilience/Policy.ts"
import * as Lane from "../testing/Lane.ts"
import { freePort } from "../testing/Processes.ts"
import { CallError } from "./CallError.ts"
import * as Client from "./Client.ts"
import { Idempotent } from "./Idempotent.ts"
import * as RemotePool from "./RemotePool.ts"

class WhoRpcs extends RpcGroup.make(Rpc.make("who", { success: Schema.String }).annotate(Idempotent, true)) {}

/** An instance answering its name, each call taking a few milliseconds of work. */
const instance = (name: string) => WhoRpcs.toLayer({ who: () => Effect.as(Effect.sleep("5 millis"), name) })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** As the order saga's charge step: a transport failure is tried again 4 times, from 100 ms doubling. */
const asTheSagaDoes = Schedule.exponential("100 millis", 2).pipe(Schedule.intersect(Schedule.recurs(4)))

describe("a rolling restart of a module's two instances", () => {
  it("fails no call while each instance in turn is stopped gracefully and started again", async () => {
    const ports = [await freePort(), await freePort()]
    const served = await Promise.all(ports.map((port, i) => Lane.serve("who", WhoRpcs, instance(`instance-${i}`), { port })))
    const scope = Effect.runSync(Scope.make())
    const registry = new Policy.Registry((t) => Effect.sync(() => transitions.push(`${t.key}: ${t.from} → ${t.to} (${t.reason})`)))
    const transitions: Array<string> = []
    const dependency = registry.dependency("who", Policy.defaults)
    const pool = await Effect.runPromise(
      RemotePool.make("who", WhoRpcs, { _tag: "Urls", urls: [served[0]!.url, served[1]!.url] }, {
        secret: Lane.secret,
        caller: "tests",
        breaker: (url) => registry.instanceBreaker("who", url, Policy.defaults),
        interceptors: [...Client.standard, Policy.protectInstances(dependency)]
      }).pipe(Scope.extend(scope))
    )
    const client: RpcClient.RpcClient<RpcGroup.Rpcs<typeof WhoRpcs>, CallError> = pool.client

    const failures: Array<string> = []
    const answered: Record<string, number> = {}
    let stop = false
    const callers = Array.from({ length: 3 }, async () => {
      while (!stop) {
        const exit = await Effect.runPromiseExit(
          Effect.retry(client.who(), { schedule: asTheSagaDoes, while: (e) => e instanceof CallError })
        )
        if (Exit.isSuccess(exit)) answered[exit.value] = (answered[exit.value] ?? 0) + 1
        else failures.push(String(exit.cause))
        await sleep(300)
      }
    })

    await sleep(500)
    // The first is down long enough for its connection's redial to back off to its longest (2 s);
    // the second's restart, with the first serving throughout, needs no such wait.
    const down = [5_000, 1_000]
    for (let i = 0; i < served.length; i++) {
      // Stopped gracefully (drained, then closed), down a while as a process restarting is...
      await served[i]!.close()
      await sleep(down[i]!)
      // ...then serving again on its port, and at once the next one is stopped.
      served[i] = await Lane.serve("who", WhoRpcs, instance(`instance-${i}-restarted`), { port: ports[i]! })
    }
    // Each restarted instance takes calls again once its connection is dialled again.
    for (let waited = 0; !pool.balancer.members().every((m) => m.connected); waited += 50) {
      if (waited > 10_000) throw new Error(`not reconnected: ${JSON.stringify(pool.balancer.members())}`)
      await sleep(50)
    }
    await sleep(1_000)
    stop = true
    await Promise.all(callers)
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Promise.all(served.map((s) => s.close()))

    console.log(`rolling restart of two instances: answered ${JSON.stringify(answered)}; breakers: ${JSON.stringify(transitions)}`)
    expect(failures.slice(0, 3), `${failures.length} calls failed`).toEqual([])
    // Both restarted instances served.
    expect(answered["instance-0-restarted"]).toBeGreaterThan(0)
    expect(answered["instance-1-restarted"]).toBeGreaterThan(0)
  }, 30_000)
})
