/**
 * The balancer of a module's instances, over fake instance transports: least outstanding
 * requests, ties in turn, breakers per instance skipped when open, all open failing as a breaker
 * does, retries elsewhere, closed connections avoided, and instances removed only once idle.
 */
import { describe, expect, it } from "@effect/vitest"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Deferred, Duration, Effect, Either, Exit, Fiber, Schema, TestClock } from "effect"
import { CallError } from "../transport/CallError.ts"
import * as Client from "../transport/Client.ts"
import { Idempotent } from "../transport/Idempotent.ts"
import * as Balancer from "./Balancer.ts"
import * as CircuitBreaker from "./CircuitBreaker.ts"
import * as Policy from "./Policy.ts"

const breakerOptions: CircuitBreaker.Options = {
  windowSize: 10,
  windowDuration: Duration.seconds(60),
  minimumCalls: 2,
  failureRate: 0.5,
  slowCall: Duration.seconds(2),
  slowCallRate: 1,
  openFor: Duration.seconds(5),
  halfOpenProbes: 1,
  probeTimeout: Duration.seconds(3)
}

const lost = new CallError({ module: "inventory", rpc: "inventory.get", kind: "OutcomeUnknown", reason: "ConnectionLost", message: "lost" })

type Answer = "ok" | "fail" | Deferred.Deferred<string>

/** Instances whose answers the test sets: each records the attempts it got. */
const fixture = (urls: ReadonlyArray<string>, options: CircuitBreaker.Options = breakerOptions) => {
  const got: Record<string, number> = Object.fromEntries(urls.map((u) => [u, 0]))
  const answers: Record<string, Answer> = Object.fromEntries(urls.map((u) => [u, "ok" as Answer]))
  const connected: Record<string, boolean> = Object.fromEntries(urls.map((u) => [u, true]))
  /** How often each was asked to dial now. */
  const woken: Record<string, number> = Object.fromEntries(urls.map((u) => [u, 0]))
  const balancer = Balancer.make("inventory", { breaker: (url) => CircuitBreaker.make(`inventory at ${url}`, options) })
  const member = (url: string): Balancer.Member => ({
    url,
    connected: () => connected[url]!,
    wake: () => {
      woken[url]!++
    },
    transport: {
      rpc: () => ({
        prepare: Either.right,
        attempt: () =>
          Effect.suspend(() => {
            got[url]!++
            const answer = answers[url]!
            return answer === "ok" ? Effect.succeed(url) : answer === "fail" ? Effect.fail(lost) : Deferred.await(answer)
          })
      })
    }
  })
  for (const url of urls) balancer.add(member(url))
  const carrier = balancer.transport(() => Either.right).rpc({
    module: "inventory",
    tag: "get",
    name: "inventory.get",
    rpc: Rpc.make("get") as unknown as Rpc.AnyWithProps
  })
  /** One call's attempt effect: running it again is a retry. */
  const call = (): Effect.Effect<unknown, unknown> => carrier.attempt(undefined, {} as never, false, undefined, Number.POSITIVE_INFINITY)
  return { balancer, got, answers, connected, woken, member, call }
}

/** Lets forked calls run until `done` holds. */
const until = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000 && !done(); i++) yield* Effect.yieldNow()
    expect(done()).toBe(true)
  })

describe("Balancer", () => {
  it.effect("takes instances in turn when none is busier", () =>
    Effect.gen(function*() {
      const { call, got } = fixture(["http://a", "http://b", "http://c"])
      for (let i = 0; i < 9; i++) yield* call()
      expect(got).toEqual({ "http://a": 3, "http://b": 3, "http://c": 3 })
    }))

  it.effect("sends calls to the instances with the fewest in flight", () =>
    Effect.gen(function*() {
      const { answers, balancer, call, got } = fixture(["http://a", "http://b", "http://c"])
      const gate = yield* Deferred.make<string>()
      answers["http://a"] = gate
      // Two calls in flight: one stuck on a, the other answered by b at once.
      const stuck = yield* Effect.fork(Effect.all([call(), call()], { concurrency: "unbounded" }))
      yield* until(() => got["http://a"]! + got["http://b"]! + got["http://c"]! === 2)
      expect((yield* balancer.views).map((v) => [v.url, v.outstanding])).toEqual([["http://a", 1], ["http://b", 0], ["http://c", 0]])
      expect(got["http://a"]).toBe(1)
      for (let i = 0; i < 10; i++) yield* call()
      // a got the first stuck call only; b and c took the rest in turn.
      expect(got).toEqual({ "http://a": 1, "http://b": 6, "http://c": 5 })
      yield* Deferred.succeed(gate, "late")
      yield* Fiber.join(stuck)
      expect((yield* balancer.views).every((v) => v.outstanding === 0)).toBe(true)
    }))

  it.effect("skips an instance whose breaker is open, and fails as a breaker does when all are", () =>
    Effect.gen(function*() {
      const { answers, balancer, call, got } = fixture(["http://a", "http://b"])
      answers["http://b"] = "fail"
      for (let i = 0; i < 4; i++) yield* Effect.either(call())
      expect(got).toEqual({ "http://a": 2, "http://b": 2 })
      expect((yield* balancer.views).map((v) => [v.url, v.breaker.state])).toEqual([["http://a", "Closed"], ["http://b", "Open"]])
      for (let i = 0; i < 6; i++) expect(yield* call()).toBe("http://a")
      expect(got["http://b"]).toBe(2)

      answers["http://a"] = "fail"
      for (let i = 0; i < 10 && (yield* balancer.views)[0]!.breaker.state !== "Open"; i++) yield* Effect.either(call())
      expect((yield* balancer.views)[0]!.breaker.state).toBe("Open")
      yield* TestClock.adjust(Duration.seconds(2))
      const refused = yield* Effect.flip(call())
      expect(refused).toBeInstanceOf(CallError)
      expect(refused).toMatchObject({ kind: "NotSent", reason: "BreakerOpen", retryAfterMs: 3000 })
      expect((refused as CallError).message).toContain("all 2 instances of inventory are open")

      // Once b's breaker lets a probe through, b gets it, and closes again.
      answers["http://b"] = "ok"
      yield* TestClock.adjust(Duration.seconds(3))
      expect(yield* call()).toBe("http://b")
      expect((yield* balancer.views).map((v) => [v.url, v.breaker.state])).toEqual([["http://a", "HalfOpen"], ["http://b", "Closed"]])
    }))

  it.effect("sends a retry to another instance than the one that just failed", () =>
    Effect.gen(function*() {
      const { answers, call, got } = fixture(["http://a", "http://b"], { ...breakerOptions, minimumCalls: 10 })
      // b is busier (one call in flight), so a would be chosen again but for the retry rule.
      const gate = yield* Deferred.make<string>()
      answers["http://b"] = gate
      yield* Effect.fork(Effect.all([call(), call()], { concurrency: "unbounded" }))
      yield* until(() => got["http://a"]! + got["http://b"]! === 2)
      expect(got).toEqual({ "http://a": 1, "http://b": 1 })
      answers["http://a"] = "fail"
      const attempt = call()
      expect(yield* Effect.flip(attempt)).toBe(lost)
      expect(got["http://a"]).toBe(2)
      answers["http://b"] = "ok"
      expect(yield* attempt).toBe("http://b")
      // A new call (not a retry) goes by the counts again.
      answers["http://a"] = "ok"
      expect(yield* call()).toBe("http://a")
    }))

  it.effect("chooses an instance whose connection is closed only when none is open", () =>
    Effect.gen(function*() {
      const { call, connected, got } = fixture(["http://a", "http://b"])
      connected["http://a"] = false
      for (let i = 0; i < 4; i++) yield* call()
      expect(got).toEqual({ "http://a": 0, "http://b": 4 })
      connected["http://b"] = false
      yield* call()
      yield* call()
      expect(got).toEqual({ "http://a": 1, "http://b": 5 })
    }))

  it.effect("asks every instance not connected to dial now when none is, and judges none by attempts never sent", () =>
    Effect.gen(function*() {
      const { answers, balancer, call, connected, got, woken } = fixture(["http://a", "http://b"])
      connected["http://a"] = false
      yield* call()
      // One is connected: the other dials on its own schedule.
      expect(woken).toEqual({ "http://a": 0, "http://b": 0 })
      connected["http://b"] = false
      answers["http://a"] = "fail"
      answers["http://b"] = "fail"
      // A restart's handover: neither connected, as many failed attempts as open a breaker.
      for (let i = 0; i < 6; i++) yield* Effect.either(call())
      expect(got).toEqual({ "http://a": 3, "http://b": 4 })
      expect(woken).toEqual({ "http://a": 6, "http://b": 6 })
      // Connected again, both take calls at once: no breaker opened for what was never sent.
      connected["http://a"] = true
      connected["http://b"] = true
      answers["http://a"] = "ok"
      answers["http://b"] = "ok"
      expect((yield* balancer.views).map((v) => v.breaker.state)).toEqual(["Closed", "Closed"])
      expect([yield* call(), yield* call()].sort()).toEqual(["http://a", "http://b"])
    }))

  it.effect("drains a removed instance: no new call, closed once its calls in flight end; named again, it serves again", () =>
    Effect.gen(function*() {
      const { answers, balancer, call, got, member } = fixture(["http://a", "http://b"])
      const gate = yield* Deferred.make<string>()
      answers["http://a"] = gate
      const inFlight = yield* Effect.fork(call())
      yield* until(() => got["http://a"] === 1)
      let closed = 0
      balancer.remove("http://a", () => void closed++)
      expect(balancer.members().map((m) => m.url)).toEqual(["http://b"])
      for (let i = 0; i < 3; i++) expect(yield* call()).toBe("http://b")
      expect(closed).toBe(0)
      yield* Deferred.succeed(gate, "answered while draining")
      expect(yield* Fiber.join(inFlight)).toBe("answered while draining")
      expect(closed).toBe(1)
      expect((yield* balancer.views).map((v) => v.url)).toEqual(["http://b"])

      balancer.add(member("http://a"))
      answers["http://a"] = "ok"
      yield* call()
      yield* call()
      expect(got["http://a"]).toBe(2)
    }))

  it.effect("fails NotSent/Unreachable, saying why, when no instance is known", () =>
    Effect.gen(function*() {
      let asked = 0
      const balancer = Balancer.make("inventory", { breaker: (url) => CircuitBreaker.make(url, breakerOptions), onEmpty: () => void asked++ })
      balancer.setProblem("dns://inventory:8080 did not resolve: ENOTFOUND")
      const carrier = balancer.transport(() => Either.right).rpc({
        module: "inventory",
        tag: "get",
        name: "inventory.get",
        rpc: Rpc.make("get") as unknown as Rpc.AnyWithProps
      } satisfies Parameters<Client.Transport["rpc"]>[0])
      const exit = yield* Effect.exit(carrier.attempt(undefined, {} as never, false, undefined, Number.POSITIVE_INFINITY))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Either.getOrThrow(Either.flip(yield* Effect.either(carrier.attempt(undefined, {} as never, false, undefined, 1))))
      expect(error).toMatchObject({ kind: "NotSent", reason: "Unreachable" })
      expect((error as CallError).message).toContain("no instance of inventory is known (dns://inventory:8080 did not resolve: ENOTFOUND)")
      expect(asked).toBe(2)
    }))

  it.live("under the module's policy: an idempotent call cut on one instance is retried on the other, another call is not", () =>
    Effect.gen(function*() {
      class Rpcs extends RpcGroup.make(
        Rpc.make("get", { success: Schema.String }).annotate(Idempotent, true),
        Rpc.make("put", { success: Schema.String })
      ) {}
      const { answers, balancer, got } = fixture(["http://a", "http://b"])
      const dependency = new Policy.Registry().dependency("inventory", Policy.defaults)
      const client = Client.make("inventory", Rpcs, balancer.transport(() => Either.right), [
        ...Client.standard,
        Policy.protectInstances(dependency)
      ])
      answers["http://a"] = "fail"
      // a is chosen first (chosen longest ago), fails, and the retry goes to b.
      expect(yield* client.get()).toBe("http://b")
      expect(got).toEqual({ "http://a": 1, "http://b": 1 })
      // Next a call that may not be repeated: a's failure is its answer.
      expect(yield* Effect.flip(client.put())).toBe(lost)
      expect(got).toEqual({ "http://a": 2, "http://b": 1 })
    }))
})
