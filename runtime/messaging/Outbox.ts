/**
 * How a module publishes an event: `Outbox.publish(event, payload)` inside the transaction that
 * makes the change (`sql.withTransaction` of the module's own client) writes one row to the
 * module's `outbox`. The row commits or rolls back with the change; nothing else publishes. Once
 * the transaction has committed, the module's relay is woken (Relay.ts), which hands the row to
 * the broker.
 *
 * The row gets the next number of its aggregate (`aggregate_seq`, from `outbox_aggregates`, whose
 * row the transaction holds locked until it ends: two transactions publishing for one aggregate
 * take their numbers in the order they commit), the numbers of the aggregate's latest earlier
 * event of each name (`preceding`: how each subscriber knows which event comes before for it),
 * and the W3C `traceparent` of its `Outbox.publish` span, a child of the publishing request's.
 *
 * A module gets an `Outbox` in its handler layer when it declares the events it publishes
 * (`Module.make({ publishes })`); it publishes only those.
 */
import { HttpTraceContext } from "@effect/platform"
import type { SqlClient } from "@effect/sql"
import { Context, Effect, Option, Schema } from "effect"
import * as AfterCommit from "../db/AfterCommit.ts"
import * as PgError from "../db/PgError.ts"
import * as Event from "./Event.ts"

export interface Publisher {
  readonly publish: <A, I>(event: Event.Event<string, string, A, I>, payload: A) => Effect.Effect<void>
}

export class Outbox extends Context.Tag("tessera/messaging/Outbox")<Outbox, Publisher>() {}

/** Publishes `payload` as `event`, in the current transaction of the module's own client. */
export const publish = <A, I>(event: Event.Event<string, string, A, I>, payload: A): Effect.Effect<void, never, Outbox> =>
  Effect.flatMap(Outbox, (outbox) => outbox.publish(event, payload))

/** The channel on which a module's database tells its relays that its outbox has new rows. */
export const channelOf = (module: string) => `tessera_outbox_${module}`

/**
 * The outbox of `module` over its own client; `wake` runs after each publishing transaction
 * commits. With `notify` (PostgreSQL), the transaction also notifies `channelOf(module)`, which
 * PostgreSQL delivers at its commit to the relays of every instance.
 */
export const make = (
  module: string,
  sql: SqlClient.SqlClient,
  events: ReadonlyArray<Event.Event.Any>,
  wake: () => void,
  options: { readonly notify: boolean }
): Publisher => {
  const channel = channelOf(module)
  const declared = new Set(events)
  const afterCommit = Effect.sync(wake)
  return {
    publish: (event, payload) =>
      Effect.gen(function*() {
        if (!declared.has(event)) {
          return yield* Effect.dieMessage(`${module} published ${event.name}, which it does not declare (Module.make({ publishes }))`)
        }
        const encoded = yield* Effect.orDie(Schema.encode(event.payload)(payload))
        if (!(yield* AfterCommit.register(afterCommit))) {
          return yield* Effect.dieMessage(
            `${module} published ${event.name} outside a transaction: publish inside the transaction that makes the change (sql.withTransaction)`
          )
        }
        const aggregate = event.aggregate(payload)
        const [numbered] = yield* sql<{ readonly seq: string; readonly preceding: Readonly<Record<string, number>> }>`
          INSERT INTO outbox_aggregates AS a (aggregate, last_seq, latest, preceding)
          VALUES (${aggregate}, 1, jsonb_build_object(${event.name}::text, 1), '{}'::jsonb)
          ON CONFLICT (aggregate) DO UPDATE SET
            last_seq = a.last_seq + 1,
            preceding = a.latest,
            latest = a.latest || jsonb_build_object(${event.name}::text, a.last_seq + 1)
          RETURNING last_seq::text AS seq, preceding`.pipe(PgError.orDie)
        const traceparent = Option.match(yield* Effect.option(Effect.currentSpan), {
          onNone: () => null,
          onSome: (span) => HttpTraceContext.toHeaders(span).traceparent ?? null
        })
        yield* sql`INSERT INTO outbox (id, event, aggregate, payload, aggregate_seq, preceding, traceparent)
          VALUES (${crypto.randomUUID()}, ${event.name}, ${aggregate}, ${JSON.stringify(encoded)}::jsonb,
                  ${numbered!.seq}::bigint, ${JSON.stringify(numbered!.preceding)}::jsonb, ${traceparent})`.pipe(PgError.orDie)
        if (options.notify) yield* sql`SELECT pg_notify(${channel}, 'published')`.pipe(PgError.orDie)
      }).pipe(Effect.withSpan("Outbox.publish", { attributes: { "tessera.module": module, "tessera.event": event.name } }))
  }
}
