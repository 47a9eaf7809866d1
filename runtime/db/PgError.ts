/**
 * Reads the PostgreSQL error behind a SqlError: SqlError's own message is generic, the server's
 * SQLSTATE code and constraint name sit on its cause.
 */
import type { SqlError } from "@effect/sql"
import { Effect, Predicate } from "effect"

interface PgCause {
  readonly code?: unknown
  readonly constraint?: unknown
  readonly constraint_name?: unknown
}

const cause = (error: SqlError.SqlError): PgCause =>
  typeof error.cause === "object" && error.cause !== null ? (error.cause as PgCause) : {}

/** The SQLSTATE code (`23505` unique violation, `42501` permission denied, ...), if any. */
export const code = (error: SqlError.SqlError): string | undefined => {
  const c = cause(error).code
  return typeof c === "string" ? c : undefined
}

/** The name of the constraint a statement violated, if any. */
export const constraint = (error: SqlError.SqlError): string | undefined => {
  const c = cause(error)
  const name = c.constraint ?? c.constraint_name
  return typeof name === "string" ? name : undefined
}

/** Whether the statement violated the unique constraint named `name`. */
export const isUniqueViolation = (error: SqlError.SqlError, name: string): boolean =>
  code(error) === "23505" && constraint(error) === name

/**
 * Input the database refused as data (SQLSTATE class 22, "data exception": `22021` a byte
 * sequence such as NUL, `22P05`, `22003` a number out of range, `22007`/`22008` a date, ...).
 * The contracts' Schemas refuse such input first; this is the safety net for what they miss, so
 * that it is a 400, not a 500. It is a defect with this `name` and a message that quotes nothing
 * of the input: the name survives a call across processes (a defect travels as name and
 * message), and the gateway answers it with a validation problem (gateway/Problem.ts).
 */
export class InputRejected extends Error {
  override readonly name = "InputRejected"
  constructor(readonly sqlState: string) {
    super(`the database refused a value of this request as data (SQLSTATE ${sqlState})`)
  }
}

/** Whether the statement failed on its data (SQLSTATE class 22) rather than on the database. */
export const isDataException = (error: SqlError.SqlError): boolean => code(error)?.startsWith("22") === true

/**
 * A repository's failure as a defect: InputRejected for a data exception, the error itself
 * otherwise. For `Effect.catchAll` on SQL statements, in place of `Effect.orDie`.
 */
export const die = (error: unknown): Effect.Effect<never> =>
  Effect.die(
    Predicate.isTagged(error, "SqlError") && isDataException(error as SqlError.SqlError)
      ? new InputRejected(code(error as SqlError.SqlError)!)
      : error
  )

/** `Effect.orDie` for SQL statements: a data exception dies as InputRejected (see `die`). */
export const orDie = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, never, R> => Effect.catchAll(effect, die)
