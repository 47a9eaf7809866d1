/**
 * PgError.orDie, the safety net under the contracts' text rules: a statement that fails on its
 * data (SQLSTATE class 22) dies with InputRejected, which the gateway answers with 400; any other
 * failure stays the SqlError it was (a 500). Against a real PostgreSQL.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Cause, Effect, Exit, Option, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import * as Services from "../testing/Services.ts"
import * as PgError from "./PgError.ts"

const postgres = await Services.findPostgres()

/** The defect `PgError.orDie` turns the statement's failure into. */
const defectOf = (statement: (sql: PgClient.PgClient) => Effect.Effect<unknown, unknown>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make((postgres as { value: string }).value), maxConnections: 1 }),
      (sql) => Effect.exit(PgError.orDie(statement(sql)))
    )).pipe(Effect.provide(Reactivity.layer))
  ).then((exit) => Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined)

describe.skipIf(!postgres.ok)("PgError.orDie", () => {
  it("dies with InputRejected, quoting nothing of the input, when the database refuses the data", async () => {
    const cases: ReadonlyArray<readonly [string, (sql: PgClient.PgClient) => Effect.Effect<unknown, unknown>]> = [
      ["22021", (sql) => sql`SELECT ${"Zq7\u0000"}::text`],
      ["22003", (sql) => sql`SELECT ${"3000000000"}::int4`],
      ["22008", (sql) => sql`SELECT make_date(-300000, 1, 1)::timestamptz`],
      ["22P02", (sql) => sql`SELECT ${"Zq7"}::uuid`]
    ]
    for (const [code, statement] of cases) {
      const defect = await defectOf(statement)
      expect(defect, code).toBeInstanceOf(PgError.InputRejected)
      expect((defect as PgError.InputRejected).sqlState.slice(0, 2), code).toBe("22")
      expect((defect as Error).message, code).not.toContain("Zq7")
    }
  })

  it("keeps any other failure as it was", async () => {
    const defect = await defectOf((sql) => sql`SELECT * FROM no_such_table`)
    expect(defect).not.toBeInstanceOf(PgError.InputRejected)
    expect(PgError.code(defect as never)).toBe("42P01")
  })
})
