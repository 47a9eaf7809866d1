/**
 * `AfterCommit` over a client whose transactions are simulated (`withTransaction` runs the effect,
 * and a failure stands for a rollback): what is registered runs once after the outermost
 * transaction succeeds, never after one that fails, and registering outside one is refused.
 */
import type { SqlClient } from "@effect/sql"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import * as AfterCommit from "./AfterCommit.ts"

const client = () => {
  const log: Array<string> = []
  const sql = AfterCommit.install({
    withTransaction: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.tap(effect, () => Effect.sync(() => log.push("commit")))
  } as unknown as SqlClient.SqlClient)
  const note = (what: string) => AfterCommit.register(Effect.sync(() => log.push(what)))
  return { sql, log, note }
}

describe("AfterCommit", () => {
  it("runs what was registered once the outermost transaction has committed, nested ones included", async () => {
    const { log, note, sql } = client()
    const registered = await Effect.runPromise(sql.withTransaction(Effect.gen(function*() {
      const outer = yield* note("outer")
      const inner = yield* sql.withTransaction(note("inner"))
      return [outer, inner]
    })))
    expect(registered).toEqual([true, true])
    // The inner transaction (a savepoint) commits nothing: both run after the outer commit.
    expect(log).toEqual(["commit", "commit", "outer", "inner"])
  })

  it("runs nothing after a transaction that fails", async () => {
    const { log, note, sql } = client()
    const exit = await Effect.runPromise(Effect.either(sql.withTransaction(Effect.zipRight(note("work"), Effect.fail("rolled back")))))
    expect(exit).toEqual(Either.left("rolled back"))
    expect(log).toEqual([])
  })

  it("registers nothing outside a transaction", async () => {
    const { log, note } = client()
    expect(await Effect.runPromise(note("work"))).toBe(false)
    expect(log).toEqual([])
  })
})
