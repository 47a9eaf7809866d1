import type { SqlClient, SqlConnection } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Option, Ref, Stream, TestClock } from "effect"
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

describe("Gate.make's connections", () => {
  /**
   * A gate over a database whose connections take every statement and never answer one (cut
   * off without a word), statements timed out after `statementTimeout`; `statements` counts those sent.
   */
  const silentGate = (statementTimeout: Duration.DurationInput) => {
    const statements = { count: 0 }
    const never = () => Effect.suspend(() => {
      statements.count++
      return Effect.never
    })
    const connection = {
      execute: never,
      executeRaw: never,
      executeValues: never,
      executeUnprepared: never,
      executeStream: () => Stream.never
    } as unknown as SqlConnection.Connection
    // Only `reserve` is what Gate uses of its base client.
    const database = { reserve: Effect.succeed(connection) } as unknown as SqlClient.SqlClient
    return Effect.map(
      Gate.make(database, {
        label: "silent",
        connections: 1,
        acquireTimeout: Duration.seconds(1),
        statementTimeout: Option.some(Duration.decode(statementTimeout))
      }),
      (gate) => ({ gate, statements })
    )
  }

  it.live("takes a connection whose server did not answer a statement for dead: what follows on it fails at once", () =>
    Effect.gen(function*() {
      const { gate, statements } = yield* silentGate("50 millis")
      yield* Effect.scoped(Effect.gen(function*() {
        const connection = yield* gate.reserve
        const first = yield* Effect.exit(connection.executeUnprepared("UPDATE t SET x = 1", [], undefined))
        expect(String(Exit.isFailure(first) && Cause.squash(first.cause))).toContain("did not answer a statement within")
        // A transaction's ROLLBACK next, uninterruptible as @effect/sql runs it: not sent, not waited for.
        const rollback = yield* Effect.exit(Effect.uninterruptible(connection.executeUnprepared("ROLLBACK", [], undefined)))
        expect(String(Exit.isFailure(rollback) && Cause.squash(rollback.cause))).toContain("lost a connection that stopped answering")
        expect(statements.count).toBe(1)
      }))
      // Another connection is tried afresh.
      const next = yield* Effect.exit(Effect.scoped(Effect.flatMap(gate.reserve, (c) => c.executeUnprepared("SELECT 1", [], undefined))))
      expect(String(Exit.isFailure(next) && Cause.squash(next.cause))).toContain("did not answer a statement within")
      expect(statements.count).toBe(2)
    }))

  it.effect("waits briefly for the statement after an interrupted one (its ROLLBACK): on a dead connection, not the statement timeout", () =>
    Effect.gen(function*() {
      const { gate, statements } = yield* silentGate("10 seconds")
      yield* Effect.scoped(Effect.gen(function*() {
        const connection = yield* gate.reserve
        // A request cut short (its client gone, the grace period over) mid-statement.
        const statement = yield* Effect.fork(connection.executeUnprepared("UPDATE t SET x = 1", [], undefined))
        yield* TestClock.adjust("1 second")
        yield* Fiber.interrupt(statement)
        const rollback = yield* Effect.fork(Effect.uninterruptible(connection.executeUnprepared("ROLLBACK", [], undefined)))
        yield* TestClock.adjust("2 seconds")
        const ended = yield* Fiber.poll(rollback)
        expect(Option.isSome(ended)).toBe(true)
        const exit = Option.getOrThrow(ended)
        expect(String(Exit.isFailure(exit) && Cause.squash(exit.cause))).toContain("did not answer a statement within 2s")
        expect(statements.count).toBe(2)
      }))
    }))
})
