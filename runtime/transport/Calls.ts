/** Rules every module-to-module call obeys, in process and remote alike. */
import { SqlClient } from "@effect/sql"
import type { Context } from "effect"

const transactionKey = SqlClient.TransactionConnection.key

/**
 * Why a call may not be made from `context`, if it may not: calls made inside a database
 * transaction are refused. A remote call would hold the transaction's locks across the network,
 * and an in-process one would share the caller's connection (and on embedded Postgres, its only
 * session): change another module's state after your transaction, through an event or a saga
 * step (STYLE.md, 6).
 */
export const refusal = (call: string, context: Context.Context<never>): Error | undefined =>
  context.unsafeMap.has(transactionKey)
    ? new Error(`${call} was called inside a database transaction; call other modules outside transactions`)
    : undefined
