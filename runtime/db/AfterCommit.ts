/**
 * Work to do once the current transaction has committed: `register` it inside a transaction of
 * a module's client (`install`ed on every module client by `Database.open`); it runs after the
 * outermost `withTransaction` commits, and not at all when that rolls back. The outbox uses it
 * to wake its relay only once a published event is visible to it.
 *
 * Work registered inside a savepoint that rolls back while the outer transaction commits still
 * runs: register only what is harmless then (a wake-up), never an effect of its own.
 */
import type { SqlClient } from "@effect/sql"
import { Context, Effect } from "effect"

class Pending extends Context.Tag("tessera/db/AfterCommit")<Pending, Array<Effect.Effect<void>>>() {}

/** Makes `sql.withTransaction` run what was `register`ed inside it after it commits. Returns `sql`. */
export const install = (sql: SqlClient.SqlClient): SqlClient.SqlClient => {
  const inner = sql.withTransaction
  const withTransaction = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.flatMap(Effect.serviceOption(Pending), (outer) => {
      // Nested (a savepoint): what it registers joins the outer transaction's list.
      if (outer._tag === "Some") return inner(effect)
      const pending: Array<Effect.Effect<void>> = []
      return Effect.tap(
        inner(Effect.provideService(effect, Pending, pending)),
        () => Effect.forEach(pending, (work) => Effect.catchAllCause(work, (cause) => Effect.logWarning("after commit", cause)), { discard: true })
      )
    })
  return Object.assign(sql, { withTransaction })
}

/** Runs `work` after the current transaction commits; `false` (and nothing registered) outside one. */
export const register = (work: Effect.Effect<void>): Effect.Effect<boolean> =>
  Effect.map(Effect.serviceOption(Pending), (pending) => {
    if (pending._tag === "None") return false
    pending.value.push(work)
    return true
  })
