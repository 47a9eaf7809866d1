/**
 * Client.ts: one builder for both paths. The same calls run in process (LocalClient) and over
 * the lane (RemoteClient ↔ RpcEndpoint) and must behave alike: interceptors in order, with the
 * call's info; each run of the intercepted effect a new attempt; the same errors.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema, Scope } from "effect"
import * as Lane from "../testing/Lane.ts"
import { CallError } from "./CallError.ts"
import type * as Client from "./Client.ts"
import * as Deadline from "./Deadline.ts"
import { Idempotent } from "./Idempotent.ts"

class Failing extends Schema.TaggedError<Failing>()("Failing", { run: Schema.Number }) {}

class StepRpcs extends RpcGroup.make(
  Rpc.make("flaky", { payload: { key: Schema.String, failures: Schema.Number }, success: Schema.Number, error: Failing }),
  Rpc.make("read", { payload: { id: Schema.String }, success: Schema.String }).annotate(Idempotent, true),
  Rpc.make("hang"),
  Rpc.make("relayDeath")
) {}

/** How many times `flaky` ran, by key. */
const runs = new Map<string, number>()

const handlers = StepRpcs.toLayer({
  flaky: ({ failures, key }) => {
    const run = (runs.get(key) ?? 0) + 1
    runs.set(key, run)
    return run <= failures ? Effect.fail(new Failing({ run })) : Effect.succeed(run)
  },
  read: ({ id }) => Effect.succeed(`read ${id}`),
  hang: () => Effect.never,
  // A handler whose own call failed, and which died of it.
  relayDeath: () =>
    Effect.die(new CallError({ module: "stock", rpc: "stock.count", kind: "OutcomeUnknown", reason: "ConnectionLost", message: "lost" }))
})

type Steps = Awaited<ReturnType<typeof Lane.local<RpcGroup.Rpcs<typeof StepRpcs>>>>

/** Records, per call, the order interceptors ran in and the info each got. */
const recorder = () => {
  const log: Array<string> = []
  const infos: Array<Client.CallInfo> = []
  const named = (label: string): Client.Interceptor => (info, call) =>
    Effect.suspend(() => {
      log.push(`${label}:before`)
      if (label === "outer") infos.push(info)
      return Effect.ensuring(call, Effect.sync(() => log.push(`${label}:after`)))
    })
  return { log, infos, interceptors: [named("outer"), named("inner")] }
}

/** Retries the call once per failure, up to twice: each run must be a new attempt. */
const retrying: Client.Interceptor = (_info, call) => Effect.retry(call, { times: 2 })

const failure = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
const defect = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined

describe.each(["in process", "remote"] as const)("Client.make (%s)", (path) => {
  let scope: Scope.CloseableScope
  let served: Lane.Served | undefined
  const build = async (interceptors: ReadonlyArray<Client.Interceptor>): Promise<Steps> => {
    if (path === "in process") return Lane.local("steps", StepRpcs, handlers, scope, interceptors)
    served ??= await Lane.serve("steps", StepRpcs, handlers)
    return Lane.remote("steps", StepRpcs, served.url, scope, { interceptors })
  }

  beforeAll(async () => {
    scope = await Effect.runPromise(Scope.make())
  })
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await served?.close()
  })

  it("runs the interceptors outermost first, each with the call's info", async () => {
    const { infos, interceptors, log } = recorder()
    const client = await build(interceptors)
    expect(await Effect.runPromise(client.read({ id: "a" }))).toBe("read a")
    expect(log).toEqual(["outer:before", "inner:before", "inner:after", "outer:after"])
    await Effect.runPromise(client.flaky({ key: `${path}-info`, failures: 0 }))
    await Effect.runPromise(client.flaky({ key: `${path}-info`, failures: 0 }, { headers: { "idempotency-key": "k-1" } }))
    await Effect.runPromise(client.flaky({ key: `${path}-info`, failures: 0 }, { discard: true }))
    expect(infos.map(({ discard, idempotent, module, name, tag }) => ({ module, tag, name, idempotent, discard }))).toEqual([
      // `read` is annotated Idempotent; `flaky` is only when the call carries a key.
      { module: "steps", tag: "read", name: "steps.read", idempotent: true, discard: false },
      { module: "steps", tag: "flaky", name: "steps.flaky", idempotent: false, discard: false },
      { module: "steps", tag: "flaky", name: "steps.flaky", idempotent: true, discard: false },
      { module: "steps", tag: "flaky", name: "steps.flaky", idempotent: false, discard: true }
    ])
    expect(infos[0]!.rpc._tag).toBe("read")
  })

  it("runs a new attempt each time an interceptor runs the call again", async () => {
    const client = await build([retrying])
    const key = `${path}-retry`
    expect(await Effect.runPromise(client.flaky({ key, failures: 2 }))).toBe(3)
    expect(runs.get(key)).toBe(3)
    const exhausted = await Effect.runPromiseExit(client.flaky({ key: `${key}-2`, failures: 5 }))
    expect(failure(exhausted)).toEqual(new Failing({ run: 3 }))
  })

  it("fails with the contract's errors, CallError TimedOut at the deadline, and a CallError defect as itself", async () => {
    const client = await build([])
    const failed = failure(await Effect.runPromiseExit(client.flaky({ key: `${path}-error`, failures: 1 })))
    expect(failed).toBeInstanceOf(Failing)
    expect(failed).toEqual(new Failing({ run: 1 }))

    const timedOut = failure(await Effect.runPromiseExit(Deadline.within(client.hang(), "100 millis")))
    expect(timedOut).toBeInstanceOf(CallError)
    expect(timedOut).toMatchObject({ module: "steps", rpc: "steps.hang", kind: "TimedOut", reason: "Deadline" })

    // A deadline already passed fails at once, without calling.
    const late = failure(await Effect.runPromiseExit(Deadline.at(client.read({ id: "late" }), 0)))
    expect(late).toMatchObject({ kind: "TimedOut", reason: "Deadline" })

    const died = defect(await Effect.runPromiseExit(client.relayDeath()))
    expect(died).toBeInstanceOf(CallError)
    expect(died).toMatchObject({ module: "stock", rpc: "stock.count", kind: "OutcomeUnknown", reason: "ConnectionLost" })

    // The client is whole after all that.
    expect(await Effect.runPromise(client.read({ id: "after" }))).toBe("read after")
  })
})
