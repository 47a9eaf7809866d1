/** Rules every module-to-module call obeys, in process and remote alike. */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const transactionKey = SqlClient.TransactionConnection.key

/**
 * Refuses a call made inside a database transaction. A remote call would hold the transaction's
 * locks across the network, and an in-process one would share the caller's connection (and on
 * embedded Postgres, its only session): change another module's state after your transaction,
 * through an event or a saga step (STYLE.md, 6).
 */
export const guard = (call: string): Effect.Effect<void> =>
  Effect.contextWithEffect((context) =>
    context.unsafeMap.has(transactionKey)
      ? Effect.die(new Error(`${call} was called inside a database transaction; call other modules outside transactions`))
      : Effect.void
  )
