import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import { Duration, Effect, Either, Exit, Fiber, Schema, TestClock } from "effect"
import { CallError } from "../transport/CallError.ts"
import type { CallInfo } from "../transport/Client.ts"
import * as CircuitBreaker from "./CircuitBreaker.ts"

const info: CallInfo = {
  module: "inventory",
  tag: "get",
  name: "inventory.get",
  rpc: Rpc.make("get") as unknown as Rpc.AnyWithProps,
  idempotent: true,
  discard: false
}

const lost = new CallError({ module: "inventory", rpc: "inventory.get", kind: "OutcomeUnknown", reason: "ConnectionLost", message: "lost" })

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {}) {}

const options: CircuitBreaker.Options = {
  windowSize: 10,
  windowDuration: Duration.seconds(60),
  minimumCalls: 4,
  failureRate: 0.5,
  slowCall: Duration.seconds(2),
  slowCallRate: 1,
  openFor: Duration.seconds(5),
  halfOpenProbes: 2,
  probeTimeout: Duration.seconds(3)
}

const recording = (opts: CircuitBreaker.Options = options) => {
  const states: Array<string> = []
  const breaker = CircuitBreaker.make("inventory", opts, (t) => Effect.sync(() => void states.push(`${t.from}->${t.to}`)))
  return { breaker, states }
}

const ok = Effect.succeed("ok")
const failing = Effect.fail(lost)

describe("CircuitBreaker", () => {
  it.effect("goes closed → open → half-open → open → half-open → closed, in that exact sequence", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording()
      // Three failures of four calls: 75% ≥ 50% once the window holds the minimum of four.
      yield* breaker.run(info, ok)
      for (let i = 0; i < 2; i++) yield* Effect.either(breaker.run(info, failing))
      expect((yield* breaker.snapshot).state).toBe("Closed")
      yield* Effect.either(breaker.run(info, failing))
      expect(states).toEqual(["Closed->Open"])

      // Open: refused unrun, saying when the next probe is.
      let ran = false
      const refused = yield* Effect.either(breaker.run(info, Effect.sync(() => (ran = true))))
      expect(ran).toBe(false)
      expect(Either.getLeft(refused).pipe((e) => e._tag === "Some" ? e.value : undefined)).toMatchObject({
        kind: "NotSent",
        reason: "BreakerOpen",
        retryAfterMs: 5000
      })
      yield* TestClock.adjust("2 seconds")
      const later = yield* Effect.flip(breaker.run(info, ok))
      expect(later).toMatchObject({ reason: "BreakerOpen", retryAfterMs: 3000 })

      // Half-open after openFor: a failed probe opens it again.
      yield* TestClock.adjust("3 seconds")
      yield* Effect.either(breaker.run(info, failing))
      expect(states).toEqual(["Closed->Open", "Open->HalfOpen", "HalfOpen->Open"])

      // Two successful probes close it, with an empty window.
      yield* TestClock.adjust("5 seconds")
      yield* breaker.run(info, ok)
      expect((yield* breaker.snapshot).state).toBe("HalfOpen")
      yield* breaker.run(info, ok)
      expect(states).toEqual(["Closed->Open", "Open->HalfOpen", "HalfOpen->Open", "Open->HalfOpen", "HalfOpen->Closed"])
      expect(yield* breaker.snapshot).toMatchObject({ state: "Closed", calls: 0, failures: 0 })
    }))

  it.effect("counts transport failures and timeouts, not the callee's domain errors or defects", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording()
      for (let i = 0; i < 6; i++) yield* Effect.either(breaker.run(info, Effect.fail(new NotFound())))
      for (let i = 0; i < 2; i++) yield* Effect.exit(breaker.run(info, Effect.die("bug")))
      expect(yield* breaker.snapshot).toMatchObject({ state: "Closed", calls: 8, failures: 0 })
      const rejected = new CallError({ ...lost, kind: "NotSent", reason: "BulkheadFull", message: "full" })
      for (let i = 0; i < 8; i++) yield* Effect.either(breaker.run(info, Effect.fail(rejected)))
      expect(yield* breaker.snapshot).toMatchObject({ state: "Closed", failures: 0 })
      // The callee's own call to catalog failed, and it died of it: that says nothing of inventory.
      const deeper = new CallError({ ...lost, module: "catalog", rpc: "catalog.get", message: "lost" })
      for (let i = 0; i < 8; i++) yield* Effect.exit(breaker.run(info, Effect.die(deeper)))
      expect(yield* breaker.snapshot).toMatchObject({ state: "Closed", failures: 0 })
      const timedOut = new CallError({ ...lost, kind: "TimedOut", reason: "Deadline", message: "late" })
      for (let i = 0; i < 10; i++) yield* Effect.either(breaker.run(info, Effect.fail(timedOut)))
      expect(states).toEqual(["Closed->Open"])
    }))

  it.effect("does not open below the minimum number of calls", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording()
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(info, failing))
      expect(states).toEqual([])
      expect(yield* breaker.snapshot).toMatchObject({ calls: 3, failures: 3 })
    }))

  it.effect("forgets calls older than the window's duration", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording()
      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(info, failing))
      yield* TestClock.adjust("61 seconds")
      yield* Effect.either(breaker.run(info, failing))
      expect(states).toEqual([])
      expect(yield* breaker.snapshot).toMatchObject({ calls: 1, failures: 1 })
    }))

  it.effect("opens on slow calls", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording()
      for (let i = 0; i < 4; i++) {
        const fiber = yield* Effect.fork(breaker.run(info, Effect.delay(ok, "2500 millis")))
        yield* TestClock.adjust("2500 millis")
        yield* Fiber.join(fiber)
      }
      expect(states).toEqual(["Closed->Open"])
    }))

  it.effect("lets at most halfOpenProbes probes through; the others are refused", () =>
    Effect.gen(function*() {
      const { breaker } = recording()
      for (let i = 0; i < 4; i++) yield* Effect.either(breaker.run(info, failing))
      yield* TestClock.adjust("5 seconds")
      let started = 0
      const slowProbe = Effect.sync(() => void started++).pipe(Effect.zipRight(Effect.never))
      const probes = yield* Effect.all([Effect.fork(breaker.run(info, slowProbe)), Effect.fork(breaker.run(info, slowProbe))])
      while (started < 2) yield* Effect.yieldNow()
      const third = yield* Effect.flip(breaker.run(info, ok))
      expect(third).toMatchObject({ reason: "BreakerOpen", retryAfterMs: 3000 })
      expect((yield* breaker.snapshot).probes).toBe(2)
      yield* Effect.forEach(probes, Fiber.interrupt)
    }))

  it.effect("a stuck probe times out and opens the breaker again: it cannot hold it half-open", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording()
      for (let i = 0; i < 4; i++) yield* Effect.either(breaker.run(info, failing))
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(breaker.run(info, Effect.never))
      yield* TestClock.adjust("3 seconds")
      const exit = yield* Fiber.await(probe)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(exit).toMatchObject({ cause: { error: { kind: "TimedOut" } } })
      expect(states).toEqual(["Closed->Open", "Open->HalfOpen", "HalfOpen->Open"])
      expect((yield* breaker.snapshot).retryAfterMs).toBe(5000)
    }))

  it.effect("a probe interrupted by its caller frees its place without a verdict", () =>
    Effect.gen(function*() {
      const { breaker, states } = recording({ ...options, halfOpenProbes: 1 })
      for (let i = 0; i < 4; i++) yield* Effect.either(breaker.run(info, failing))
      yield* TestClock.adjust("5 seconds")
      const probe = yield* Effect.fork(breaker.run(info, Effect.never))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(probe)
      yield* breaker.run(info, ok)
      expect(states).toEqual(["Closed->Open", "Open->HalfOpen", "HalfOpen->Closed"])
    }))

  it.effect("keeps one breaker's verdicts apart from another's (keyed by target)", () =>
    Effect.gen(function*() {
      const a = recording()
      const b = recording()
      for (let i = 0; i < 4; i++) yield* Effect.either(a.breaker.run(info, failing))
      expect((yield* a.breaker.snapshot).state).toBe("Open")
      expect((yield* b.breaker.snapshot).state).toBe("Closed")
    }))
})
