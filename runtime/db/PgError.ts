/**
 * Reads the PostgreSQL error behind a SqlError: SqlError's own message is generic, the server's
 * SQLSTATE code and constraint name sit on its cause.
 */
import type { SqlError } from "@effect/sql"

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
