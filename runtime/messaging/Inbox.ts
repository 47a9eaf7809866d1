/**
 * A subscriber's side of a delivery, whatever carried it: `apply` runs the handler and records the
 * message's id in the module's `inbox` in one transaction of the module's own client, so a message
 * delivered again (the relay handing a batch twice, a broker redelivering) finds its id there and
 * changes nothing. `deadLetter` keeps a message that failed too often, with its error, in
 * `dead_letters` (listed and replayed through DeadLetters.ts).
 */
import { Headers, HttpTraceContext } from "@effect/platform"
import type { SqlClient } from "@effect/sql"
import { Cause, type Context, Effect, Option, Schema } from "effect"
import type { Message } from "./Broker.ts"
import type * as Event from "./Event.ts"

/** The longest error text kept with a failed delivery. */
const ERROR_LIMIT = 4000

/**
 * A failure's text as a delivery keeps it: with, on its first line, the message of the error
 * behind it when it has one (a SqlError's own message is generic; the server's is its cause's).
 */
export const describe = (cause: Cause.Cause<unknown>) => {
  const inner = (Cause.squash(cause) as { readonly cause?: unknown } | undefined)?.cause
  const pretty = Cause.pretty(cause)
  const text = inner instanceof Error && inner.message !== ""
    ? pretty.replace(/^[^\n]*/, (first) => `${first}: ${inner.message}`)
    : pretty
  return text.length > ERROR_LIMIT ? `${text.slice(0, ERROR_LIMIT)}…` : text
}

/**
 * Applies `message` with `subscription`'s handler (which gets `context`: the module's own client,
 * its outbox) inside a transaction (a savepoint, when called inside one) that also writes its
 * inbox row: `applied`, or `duplicate` when the inbox already had it (the handler does not run).
 * Whatever the handler or the decoding of the payload fails with, nothing of it stays.
 *
 * It runs in a span `<event>.handle` (kind consumer) whose parent is the span that published the
 * message (its `traceparent`), so one trace runs from the publishing request to the handler.
 */
export const apply = (
  sql: SqlClient.SqlClient,
  subscription: Event.Subscription.Any,
  message: Message,
  attempt: number,
  context: Context.Context<never>
): Effect.Effect<"applied" | "duplicate", unknown> =>
  sql.withTransaction(Effect.gen(function*() {
    const fresh = yield* sql`
      INSERT INTO inbox (message_id, publisher, event) VALUES (${message.id}, ${message.publisher}, ${message.event})
      ON CONFLICT (message_id) DO NOTHING RETURNING message_id`
    if (fresh.length === 0) return "duplicate" as const
    yield* handle(subscription, message, attempt, context)
    return "applied" as const
  }))

/** A message to apply with the handler of its subscription, at its `attempt`-th delivery. */
export interface Delivery {
  readonly subscription: Event.Subscription.Any
  readonly message: Message
  readonly attempt: number
}

/**
 * Applies every one of `deliveries` (each of another message) in one transaction (a savepoint,
 * when called inside one), as `apply` does each, with one statement for all their inbox rows
 * (`apply` takes four for each: savepoint, inbox row, handler, release): the outcome of each, in
 * order. If any handler or payload fails, nothing of any stays and the whole fails: the caller
 * applies them one by one (`apply`) to find which, so a batch costs one more try only when one
 * of it fails.
 */
export const applyAll = (
  sql: SqlClient.SqlClient,
  deliveries: ReadonlyArray<Delivery>,
  context: Context.Context<never>
): Effect.Effect<ReadonlyArray<"applied" | "duplicate">, unknown> =>
  sql.withTransaction(Effect.gen(function*() {
    const fresh = new Set(
      (yield* sql<{ readonly id: string }>`
        INSERT INTO inbox ${sql.insert(deliveries.map(({ message }) => ({ message_id: message.id, publisher: message.publisher, event: message.event })))}
        ON CONFLICT (message_id) DO NOTHING RETURNING message_id::text AS id`).map((row) => row.id)
    )
    return yield* Effect.forEach(deliveries, ({ attempt, message, subscription }) =>
      fresh.has(message.id)
        ? Effect.as(handle(subscription, message, attempt, context), "applied" as const)
        : Effect.succeed("duplicate" as const))
  }))

/** Runs `subscription`'s handler on `message`'s payload, in the span `apply` describes. */
const handle = (
  subscription: Event.Subscription.Any,
  message: Message,
  attempt: number,
  context: Context.Context<never>
) =>
  Effect.flatMap(Schema.decodeUnknown(subscription.event.payload)(message.payload), (payload) =>
    // What a handler may require is checked by Module.make; `context` holds it.
    Effect.provide(
      subscription.handle(payload, { messageId: message.id, publishedAt: message.publishedAt, attempt }) as Effect.Effect<void, unknown, never>,
      context
    )).pipe(withHandleSpan(message))

const withHandleSpan = (message: Message) =>
  Effect.withSpan(`${message.event}.handle`, {
    kind: "consumer",
    attributes: { "tessera.event": message.event, "tessera.publisher": message.publisher, "tessera.message": message.id },
    ...Option.match(publishingSpan(message), { onNone: () => ({}), onSome: (parent) => ({ parent }) })
  })

/** The span that published `message`, from its W3C `traceparent` (none when absent or malformed). */
export const publishingSpan = (message: Pick<Message, "traceparent">) =>
  message.traceparent === undefined
    ? Option.none()
    : HttpTraceContext.w3c(Headers.fromInput({ traceparent: message.traceparent }))

/** Keeps `message` in `dead_letters` with the error of its last delivery. */
export const deadLetter = (sql: SqlClient.SqlClient, message: Message, attempts: number, error: string) =>
  sql`INSERT INTO dead_letters (message_id, message_seq, publisher, event, aggregate, payload, published_at, attempts, error)
      VALUES (${message.id}, ${message.seq}::bigint, ${message.publisher}, ${message.event}, ${message.aggregate},
              ${JSON.stringify(message.payload)}::jsonb, ${message.publishedAt}, ${attempts}, ${error})`

/** A dead-lettered message as an operator sees it. */
export interface DeadLetter {
  readonly messageId: string
  readonly publisher: string
  readonly event: string
  readonly aggregate: string
  readonly payload: unknown
  readonly attempts: number
  readonly error: string
  readonly deadAt: Date
}

/** The module's dead letters, oldest first. */
export const deadLetters = (sql: SqlClient.SqlClient) =>
  sql<DeadLetter>`
    SELECT message_id AS "messageId", publisher, event, aggregate, payload, attempts, error, dead_at AS "deadAt"
    FROM dead_letters ORDER BY seq`
