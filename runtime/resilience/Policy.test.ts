import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import { Duration, Effect, Either, Exit, Fiber, Metric, MetricLabel, Schema, TestClock } from "effect"
import * as Environment from "../Environment.ts"
import { CallError } from "../transport/CallError.ts"
import * as Client from "../transport/Client.ts"
import type { CallInfo, Interceptor } from "../transport/Client.ts"
import * as Deadline from "../transport/Deadline.ts"
import * as Policy from "./Policy.ts"

const infoFor = (idempotent: boolean): CallInfo => ({
  module: "inventory",
  tag: idempotent ? "get" : "restock",
  name: idempotent ? "inventory.get" : "inventory.restock",
  rpc: Rpc.make("get") as unknown as Rpc.AnyWithProps,
  idempotent,
  discard: false
})

const failure = (kind: CallError["kind"], reason: CallError["reason"]) =>
  new CallError({ module: "inventory", rpc: "inventory.get", kind, reason, message: `${kind}/${reason}` })

class OutOfStock extends Schema.TaggedError<OutOfStock>()("OutOfStock", {}) {}

/**
 * Composes the interceptors as Client.ts does, the first outermost, around `call` run as Client.ts
 * runs each attempt: failed with CallError TimedOut once the deadline in force passes.
 */
const chain = (interceptors: ReadonlyArray<Interceptor>, info: CallInfo, call: Effect.Effect<unknown, unknown>) =>
  Client.compose(interceptors)(info, Deadline.enforce(call, () => failure("TimedOut", "Deadline")))

const policy: Policy.Policy = {
  ...Policy.defaults,
  retry: { ...Policy.defaults.retry, maxAttempts: 3 },
  breaker: { ...Policy.defaults.breaker, minimumCalls: 4, windowSize: 10 }
}

/** Runs a call through a fresh dependency's chain, letting every wait pass; counts attempts. */
const attempts = (info: CallInfo, outcome: Effect.Effect<unknown, unknown>, p: Policy.Policy = policy) =>
  Effect.gen(function*() {
    const dependency = new Policy.Registry().dependency("inventory", p)
    let count = 0
    const call = Effect.zipRight(Effect.sync(() => void count++), outcome)
    const fiber = yield* Effect.fork(chain(Policy.interceptors(dependency), info, call))
    yield* TestClock.adjust("1 minute")
    const exit = yield* Fiber.await(fiber)
    return { count, exit }
  })

describe("Policy: retry", () => {
  it.effect("retries an idempotent call's transport failures, at most maxAttempts attempts in all", () =>
    Effect.gen(function*() {
      for (const [kind, reason] of [["NotSent", "Unreachable"], ["NotSent", "ShuttingDown"], ["OutcomeUnknown", "ConnectionLost"]] as const) {
        const { count, exit } = yield* attempts(infoFor(true), Effect.fail(failure(kind, reason)))
        expect(count, reason).toBe(3)
        expect(exit).toMatchObject({ cause: { error: { reason } } })
      }
    }))

  it.effect("retries an attempt's own timeout, while the call's deadline has time", () =>
    Effect.gen(function*() {
      const { count, exit } = yield* attempts(infoFor(true), Effect.never, {
        ...policy,
        timeout: Duration.seconds(1),
        deadline: Duration.seconds(30),
        retry: { ...policy.retry, maxTotal: Duration.seconds(30) }
      })
      expect(count).toBe(3)
      expect(exit).toMatchObject({ cause: { error: { kind: "TimedOut" } } })
    }))

  it.effect("stops at the call's deadline: no attempt after it", () =>
    Effect.gen(function*() {
      const { count, exit } = yield* attempts(infoFor(true), Effect.never, {
        ...policy,
        timeout: Duration.seconds(4),
        deadline: Duration.seconds(6)
      })
      expect(count).toBe(2)
      expect(exit).toMatchObject({ cause: { error: { kind: "TimedOut" } } })
    }))

  it.effect("never retries a call that is not idempotent and carries no key", () =>
    Effect.gen(function*() {
      const { count } = yield* attempts(infoFor(false), Effect.fail(failure("NotSent", "Unreachable")))
      expect(count).toBe(1)
    }))

  it.effect("never retries the callee's domain errors or defects, nor a CallError of another module", () =>
    Effect.gen(function*() {
      expect((yield* attempts(infoFor(true), Effect.fail(new OutOfStock()))).count).toBe(1)
      expect((yield* attempts(infoFor(true), Effect.die("bug"))).count).toBe(1)
      const deeper = new CallError({ module: "catalog", rpc: "catalog.get", kind: "NotSent", reason: "Unreachable", message: "down" })
      expect((yield* attempts(infoFor(true), Effect.fail(deeper))).count).toBe(1)
    }))

  it.effect("does not retry while the breaker is open: the breaker's refusal ends the call", () =>
    Effect.gen(function*() {
      const dependency = new Policy.Registry().dependency("inventory", policy)
      let reached = 0
      const call = Effect.zipRight(Effect.sync(() => void reached++), Effect.fail(failure("NotSent", "Unreachable")))
      const requests = 5
      for (let i = 0; i < requests; i++) {
        const fiber = yield* Effect.fork(chain(Policy.interceptors(dependency), infoFor(true), call))
        // Less than the breaker stays open (5 s): no probe is due meanwhile.
        yield* TestClock.adjust("1 second")
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit)).toBe(true)
        // Once open, the calls after fail at once, refused.
        if (i >= 2) expect(exit).toMatchObject({ cause: { error: { reason: "BreakerOpen" } } })
      }
      // Four attempts opened it (the window's minimum): nothing reached the dependency after.
      expect(reached).toBe(4)
      expect(reached).toBeLessThanOrEqual(requests * policy.retry.maxAttempts)
    }))
})

describe("Policy: deadlines", () => {
  it.effect("the caller's deadline bounds the call, and the attempt carries the shorter of the two", () =>
    Effect.gen(function*() {
      const dependency = new Policy.Registry().dependency("inventory", policy)
      let seen = Number.NaN
      const call = Effect.tap(Deadline.remaining, (left) => Effect.sync(() => (seen = left)))
      yield* chain(Policy.interceptors(dependency), infoFor(true), call).pipe(Deadline.within("2 seconds"))
      expect(seen).toBe(2000)
      yield* chain(Policy.interceptors(dependency), infoFor(true), call)
      expect(seen).toBe(Duration.toMillis(policy.timeout))
    }))
})

describe("Policy: configuration", () => {
  const read = (env: Record<string, string>, declared?: Policy.Defaults) =>
    Effect.either(Effect.withConfigProvider(Policy.fromConfig("inventory", declared), Environment.configProvider(env)))

  it.effect("takes the defaults, then the module's declared ones, then every target's variable, then the target's own", () =>
    Effect.gen(function*() {
      const plain = Either.getOrThrow(yield* read({}))
      expect(plain.timeout).toEqual(Duration.seconds(5))
      expect(plain.retry.maxAttempts).toBe(3)
      const declared = Either.getOrThrow(yield* read({}, { timeout: "1 second", bulkhead: { maxConcurrent: 8 } }))
      expect(declared.timeout).toEqual(Duration.seconds(1))
      expect(declared.bulkhead).toEqual({ maxConcurrent: 8, maxQueue: 256 })
      const every = Either.getOrThrow(yield* read({ TESSERA_CALL_TIMEOUT: "3 seconds", TESSERA_CALL_RETRIES: "0" }, { timeout: "1 second" }))
      expect(every.timeout).toEqual(Duration.seconds(3))
      expect(every.retry.maxAttempts).toBe(1)
      const own = Either.getOrThrow(
        yield* read({ TESSERA_CALL_TIMEOUT: "3 seconds", TESSERA_INVENTORY_CALL_TIMEOUT: "700 millis", TESSERA_CATALOG_CALL_TIMEOUT: "9 seconds" })
      )
      expect(own.timeout).toEqual(Duration.millis(700))
      expect(own.breaker.probeTimeout).toEqual(Duration.millis(700))
      const rate = Either.getOrThrow(yield* read({ TESSERA_INVENTORY_BREAKER_FAILURE_RATE: "25" }))
      expect(rate.breaker.failureRate).toBe(0.25)
    }))

  it.effect("refuses a bad value, naming the variable and what it expects", () =>
    Effect.gen(function*() {
      const bad = yield* read({ TESSERA_INVENTORY_CALL_RETRIES: "lots" })
      expect(Either.isLeft(bad)).toBe(true)
      expect(String(Either.getLeft(bad).pipe((e) => e._tag === "Some" ? e.value : ""))).toContain(
        "TESSERA_INVENTORY_CALL_RETRIES: expected a whole number from 0 to 10"
      )
      expect(Either.isLeft(yield* read({ TESSERA_BREAKER_FAILURE_RATE: "0" }))).toBe(true)
      expect(Either.isLeft(yield* read({ TESSERA_CALL_TIMEOUT: "0 millis" }))).toBe(true)
    }))
})


describe("Policy: metrics", () => {
  const value = <M extends Metric.Metric<any, any, any>>(metric: M, tags: Record<string, string>) =>
    Metric.value(Metric.taggedWithLabels(metric, Object.entries(tags).map(([k, v]) => MetricLabel.make(k, v))))

  it.effect("count retries, breaker transitions and refusals by target, and the breaker's state as a gauge", () =>
    Effect.gen(function*() {
      const target = `metrics-${crypto.randomUUID()}`
      const dependency = new Policy.Registry().dependency(target, policy)
      expect((yield* value(Policy.breakerState, { target })).value).toBe(0)
      const info = { ...infoFor(true), module: target }
      const call = Effect.fail(new CallError({ module: target, rpc: `${target}.get`, kind: "NotSent", reason: "Unreachable", message: "down" }))
      for (let i = 0; i < 3; i++) {
        const fiber = yield* Effect.fork(chain(Policy.interceptors(dependency), info, call))
        yield* TestClock.adjust("1 second")
        yield* Fiber.await(fiber)
      }
      // 3 attempts, then 1 that opened it and a refused retry, then 1 refused call.
      expect((yield* value(Policy.retries, { target })).count).toBe(3)
      expect((yield* value(Policy.breakerTransitions, { target, from: "Closed", to: "Open" })).count).toBe(1)
      expect((yield* value(Policy.breakerState, { target })).value).toBe(2)
      expect((yield* value(Policy.rejections, { target, reason: "BreakerOpen" })).count).toBe(2)
    }))

  it.effect("count attempts that time out", () =>
    Effect.gen(function*() {
      const target = `metrics-${crypto.randomUUID()}`
      const quick = { ...policy, timeout: Duration.seconds(1), deadline: Duration.seconds(30), retry: { ...policy.retry, maxTotal: Duration.seconds(30) } }
      const dependency = new Policy.Registry().dependency(target, quick)
      const info = { ...infoFor(true), module: target }
      const call = Deadline.enforce(Effect.never, () => new CallError({ module: target, rpc: `${target}.get`, kind: "TimedOut", reason: "Deadline", message: "late" }))
      const fiber = yield* Effect.fork(Client.compose(Policy.interceptors(dependency))(info, call))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.await(fiber)
      expect((yield* value(Policy.timeouts, { target, scope: "attempt" })).count).toBe(3)
    }))
})
