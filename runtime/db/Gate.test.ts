import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Ref, TestClock } from "effect"
import * as Gate from "./Gate.ts"

describe("Gate.retryWhileUnavailable", () => {
  it.effect("asks again while the database is unavailable, then succeeds", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const flaky = Effect.flatMap(Ref.updateAndGet(attempts, (n) => n + 1), (n) =>
        n < 4 ? Effect.die(Gate.unavailable("identity", "had no free connection within 2s")) : Effect.succeed("done"))
      const fiber = yield* Effect.fork(Gate.retryWhileUnavailable(flaky))
      yield* TestClock.adjust("10 seconds")
      expect(yield* fiber.await).toEqual(Exit.succeed("done"))
      expect(yield* Ref.get(attempts)).toBe(4)
    }))

  it.effect("gives up after its time, with the database's defect", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(Gate.retryWhileUnavailable(Effect.die(Gate.unavailable("identity", "is down")), "5 seconds"))
      yield* TestClock.adjust("1 minute")
      const exit = yield* fiber.await
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("identity: the database is down")
    }))

  it.effect("does not retry any other defect or a failure", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const count = Ref.update(attempts, (n) => n + 1)
      yield* Effect.exit(Gate.retryWhileUnavailable(Effect.zipRight(count, Effect.die(new Error("a bug")))))
      yield* Effect.exit(Gate.retryWhileUnavailable(Effect.zipRight(count, Effect.fail("refused"))))
      expect(yield* Ref.get(attempts)).toBe(2)
    }))
})
