/**
 * Deadlines (Deadline.ts) in process and over the lane: a call past its deadline fails
 * CallError TimedOut and its handler is interrupted; a handler runs under what is left of its
 * caller's deadline, so its own calls get no more.
 */
import { Rpc, RpcClient, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Layer, Option, Schema, Scope } from "effect"
import * as Lane from "../testing/Lane.ts"
import { CallError } from "./CallError.ts"
import * as Deadline from "./Deadline.ts"

class InnerRpcs extends RpcGroup.make(
  /** The milliseconds left of the handler's deadline; -1 for none. */
  Rpc.make("left", { success: Schema.Number }),
  /** Waits until interrupted, which it reports under `key`. */
  Rpc.make("hang", { payload: { key: Schema.String } })
) {}

class OuterRpcs extends RpcGroup.make(
  /** Calls inner.left and returns what it answered. */
  Rpc.make("relay", { success: Schema.Number }),
  /** Calls inner.hang (with `key`) and waits for it. */
  Rpc.make("relayHang", { payload: { key: Schema.String } })
) {}

type Inner = RpcClient.RpcClient<RpcGroup.Rpcs<typeof InnerRpcs>, CallError>
const InnerClient = Context.GenericTag<Inner>("test/InnerClient")

/** Completed when `hang` with that key started, and when it was interrupted. */
const hangs = new Map<string, { started: Deferred.Deferred<void>; interrupted: Deferred.Deferred<void> }>()
const hangOf = (key: string) => {
  let hang = hangs.get(key)
  if (hang === undefined) {
    hang = { started: Deferred.unsafeMake(undefined as never), interrupted: Deferred.unsafeMake(undefined as never) }
    hangs.set(key, hang)
  }
  return hang
}

const innerHandlers = InnerRpcs.toLayer({
  left: () => Effect.map(Deadline.remaining, (left) => (left === Number.POSITIVE_INFINITY ? -1 : left)),
  hang: ({ key }) =>
    Deferred.succeed(hangOf(key).started, undefined).pipe(
      Effect.zipRight(Effect.never),
      Effect.onInterrupt(() => Deferred.succeed(hangOf(key).interrupted, undefined))
    )
})

const outerHandlers = OuterRpcs.toLayer(Effect.map(InnerClient, (inner) => ({
  relay: () => Effect.orDie(inner.left()),
  relayHang: ({ key }: { readonly key: string }) => Effect.orDie(inner.hang({ key }))
})))

const failure = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe("Deadline", () => {
  it.effect("has none by default, and never extends the one in force", () =>
    Effect.gen(function*() {
      expect(yield* Deadline.remaining).toBe(Number.POSITIVE_INFINITY)
      const inner = yield* Deadline.within(Deadline.within(Deadline.remaining, "1 hour"), "2 seconds")
      expect(inner).toBeLessThanOrEqual(2_000)
      expect(inner).toBeGreaterThan(0)
      const shorter = yield* Deadline.within(Deadline.within(Deadline.remaining, "1 second"), "1 hour")
      expect(shorter).toBeLessThanOrEqual(1_000)
      expect(yield* Deadline.at(Deadline.remaining, 0)).toBe(0)
    }))

  it.live("enforce fails with the given error once the deadline passes, and interrupts the work", () =>
    Effect.gen(function*() {
      const interrupted = yield* Deferred.make<void>()
      const exit = yield* Effect.exit(
        Deadline.within(Deadline.enforce(Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined)), () => "late"), "50 millis")
      )
      expect(exit).toEqual(Exit.fail("late"))
      yield* Deferred.await(interrupted)
    }))
})

describe.each(["in process", "remote"] as const)("deadlines across calls (%s)", (path) => {
  let scope: Scope.CloseableScope
  const servers: Array<Lane.Served> = []
  let outer: RpcClient.RpcClient<RpcGroup.Rpcs<typeof OuterRpcs>, CallError>
  let inner: Inner

  beforeAll(async () => {
    scope = await Effect.runPromise(Scope.make())
    if (path === "in process") {
      inner = await Lane.local("inner", InnerRpcs, innerHandlers, scope)
      outer = await Lane.local("outer", OuterRpcs, outerHandlers.pipe(Layer.provide(Layer.succeed(InnerClient, inner))), scope)
    } else {
      const innerServed = await Lane.serve("inner", InnerRpcs, innerHandlers)
      servers.push(innerServed)
      inner = await Lane.remote("inner", InnerRpcs, innerServed.url, scope)
      // The outer module reaches the inner one over the lane too: two hops.
      const outerServed = await Lane.serve(
        "outer",
        OuterRpcs,
        outerHandlers.pipe(Layer.provide(Layer.succeed(InnerClient, inner)))
      )
      servers.push(outerServed)
      outer = await Lane.remote("outer", OuterRpcs, outerServed.url, scope)
    }
  })
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    for (const server of servers) await server.close()
  })

  it("gives a handler's own calls what is left of its caller's deadline, and none without one", async () => {
    const left = await Effect.runPromise(Deadline.within(outer.relay(), "5 seconds"))
    expect(left).toBeGreaterThan(0)
    expect(left).toBeLessThanOrEqual(5_000)
    expect(await Effect.runPromise(outer.relay())).toBe(-1)
  })

  it("fails a call past its deadline TimedOut and interrupts its handler", async () => {
    const key = `${path}-direct`
    const exit = await Effect.runPromiseExit(Deadline.within(inner.hang({ key }), "150 millis"))
    expect(failure(exit)).toBeInstanceOf(CallError)
    expect(failure(exit)).toMatchObject({ module: "inner", rpc: "inner.hang", kind: "TimedOut", reason: "Deadline" })
    await Effect.runPromise(Deferred.await(hangOf(key).interrupted))
    // The late answer of the interrupted handler changes nothing: the client goes on.
    expect(await Effect.runPromise(inner.left())).toBe(-1)
  })

  it("cancels the innermost call when the outer deadline passes, two hops away", async () => {
    const key = `${path}-nested`
    const exit = await Effect.runPromiseExit(Deadline.within(outer.relayHang({ key }), "200 millis"))
    // Both calls share the deadline: the outer one gives up, or the inner one first (and the
    // outer handler dies of its CallError). Either way the caller learns it timed out.
    const error = failure(exit) ?? (Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined)
    expect(error).toBeInstanceOf(CallError)
    expect(error).toMatchObject({ kind: "TimedOut", reason: "Deadline" })
    await Effect.runPromise(Deferred.await(hangOf(key).started))
    await Effect.runPromise(Deferred.await(hangOf(key).interrupted))
  })
})
