/**
 * Where the in-process path must agree with the remote one: a handler runs with its own module's
 * log annotations and minimum log level, never its caller's; `discard` runs the handler detached
 * and answers void at once.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, FiberRef, HashMap, Logger, LogLevel, Schema, Scope } from "effect"
import * as Lane from "../testing/Lane.ts"

const Seen = Schema.Struct({ annotations: Schema.Array(Schema.String), minimumLevel: Schema.String })

class LogRpcs extends RpcGroup.make(
  /** What the handler's fiber has for logs. */
  Rpc.make("seen", { success: Seen }),
  /** Waits until `release` (a detached handler outlives its call). */
  Rpc.make("wait", { payload: { key: Schema.String } })
) {}

const waits = new Map<string, { started: Deferred.Deferred<void>; release: Deferred.Deferred<void>; done: Deferred.Deferred<void> }>()
const waitOf = (key: string) => {
  let wait = waits.get(key)
  if (wait === undefined) {
    wait = {
      started: Deferred.unsafeMake(undefined as never),
      release: Deferred.unsafeMake(undefined as never),
      done: Deferred.unsafeMake(undefined as never)
    }
    waits.set(key, wait)
  }
  return wait
}

const handlers = LogRpcs.toLayer({
  seen: () =>
    Effect.gen(function*() {
      const annotations = yield* FiberRef.get(FiberRef.currentLogAnnotations)
      const minimumLevel = yield* FiberRef.get(FiberRef.currentMinimumLogLevel)
      return { annotations: [...HashMap.keys(annotations)].sort(), minimumLevel: minimumLevel.label }
    }),
  wait: ({ key }) =>
    Deferred.succeed(waitOf(key).started, undefined).pipe(
      Effect.zipRight(Deferred.await(waitOf(key).release)),
      Effect.zipRight(Deferred.succeed(waitOf(key).done, undefined))
    )
})

/** A caller with log settings of its own, which no handler may inherit. */
const asACaller = <A, E>(effect: Effect.Effect<A, E>) =>
  effect.pipe(Effect.annotateLogs("request", "r-1"), Logger.withMinimumLogLevel(LogLevel.Debug))

describe("the in-process path agrees with the remote one", () => {
  let scope: Scope.CloseableScope
  let served: Lane.Served
  let local: Awaited<ReturnType<typeof Lane.local<RpcGroup.Rpcs<typeof LogRpcs>>>>
  let remote: typeof local

  beforeAll(async () => {
    scope = await Effect.runPromise(Scope.make())
    local = await Lane.local("logs", LogRpcs, handlers, scope)
    served = await Lane.serve("logs", LogRpcs, handlers)
    remote = await Lane.remote("logs", LogRpcs, served.url, scope)
  })
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await served.close()
  })

  it("runs the handler with its module's log annotations and minimum level, not the caller's", async () => {
    const inProcess = await Effect.runPromise(asACaller(local.seen()))
    const overTheLane = await Effect.runPromise(asACaller(remote.seen()))
    expect(inProcess.annotations).not.toContain("request")
    expect(inProcess.minimumLevel).toBe(LogLevel.Info.label)
    expect(inProcess).toEqual(overTheLane)
  })

  it.each(["in process", "remote"] as const)("%s: answers a discarded call at once and runs its handler detached", async (path) => {
    const client = path === "in process" ? local : remote
    const key = `discard-${path}`
    expect(await Effect.runPromise(client.wait({ key }, { discard: true }))).toBeUndefined()
    // The call has returned; its handler is still waiting, then finishes on its own.
    await Effect.runPromise(Deferred.await(waitOf(key).started))
    expect(await Effect.runPromise(Deferred.isDone(waitOf(key).done))).toBe(false)
    await Effect.runPromise(Deferred.succeed(waitOf(key).release, undefined))
    await Effect.runPromise(Deferred.await(waitOf(key).done))
  })
})
