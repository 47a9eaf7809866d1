/**
 * The broker of a process with no message broker to talk to: it delivers each message to the
 * subscribers of its event that run in this process, each over its own database.
 *
 * `make(...).publish` writes the messages into each subscriber's `event_deliveries` (its queue,
 * in its own schema, written with its own client; a message it already holds is not written
 * twice) and wakes its consumer. `consume` then applies them one at a time (Inbox.ts): the
 * head of each aggregate only (the lowest `seq` of that publisher's aggregate still queued), so an
 * aggregate's events apply in order while a failing one waits, and the others go on. A delivery
 * that fails is tried again after `TESSERA_EVENTS_RETRY_BACKOFF`, doubling up to a minute; the
 * `TESSERA_EVENTS_MAX_DELIVERIES`-th failure dead-letters it, and its aggregate's next event goes.
 *
 * The row is claimed `FOR UPDATE SKIP LOCKED` in the transaction that applies it (the handler in
 * a savepoint, so a failure is recorded in the same transaction), so instances of one module on
 * one database share the queue and never apply one message at once; the head check sees a
 * claimed row, so no instance takes the next event of an aggregate whose head another applies.
 */
import type { SqlClient } from "@effect/sql"
import { Cause, type Context, Duration, Effect, Exit } from "effect"
import * as PgError from "../db/PgError.ts"
import type { Broker, Message } from "./Broker.ts"
import * as Event from "./Event.ts"
import * as Inbox from "./Inbox.ts"

/** A module of this process that subscribes to events. */
export interface Subscriber {
  readonly module: string
  readonly sql: SqlClient.SqlClient
  /** Its subscriptions by `Event.keyOf`. */
  readonly subscriptions: ReadonlyMap<string, Event.Subscription.Any>
  /** What its handlers get: its own client, its outbox. */
  readonly context: Context.Context<never>
  /** Wakes its consumer. */
  readonly wake: () => void
  /** Whether its database delivers notifications (PostgreSQL): then a queued message also notifies `channelOf` it. */
  readonly notify: boolean
}

/** The channel on which a subscriber's database tells its consumers that its queue has new messages. */
export const channelOf = (module: string) => `tessera_events_${module}`

export const make = (subscribers: ReadonlyArray<Subscriber>): Broker => ({
  publish: (messages) =>
    Effect.forEach(subscribers, (subscriber) => {
      const mine = messages.filter((m) => subscriber.subscriptions.has(Event.keyOf({ publisher: m.publisher, name: m.event })))
      if (mine.length === 0) return Effect.void
      const { sql } = subscriber
      const rows = mine.map((m) => ({
        message_id: m.id,
        publisher: m.publisher,
        event: m.event,
        aggregate: m.aggregate,
        seq: m.seq,
        payload: JSON.stringify(m.payload),
        published_at: m.publishedAt
      }))
      const queued = sql`INSERT INTO event_deliveries ${sql.insert(rows)} ON CONFLICT (message_id) DO NOTHING`
      return (subscriber.notify
        ? sql.withTransaction(Effect.zipRight(queued, sql`SELECT pg_notify(${channelOf(subscriber.module)}, 'queued')`))
        : queued).pipe(
          PgError.orDie,
          Effect.zipRight(Effect.sync(subscriber.wake))
        )
    }, { discard: true })
})

export interface Settings {
  readonly maxDeliveries: number
  readonly retryBackoff: Duration.Duration
}

interface Claimed extends Message {
  readonly attempts: number
}

const MAX_BACKOFF = Duration.minutes(1)

/** The wait before the delivery after the `attempt`-th failed. */
export const backoff = (settings: Settings, attempt: number) =>
  Duration.min(Duration.times(settings.retryBackoff, 2 ** Math.min(attempt - 1, 20)), MAX_BACKOFF)

/**
 * Applies the next message of `subscriber`'s queue that is due, if any: `idle` (none due),
 * `applied` (or found applied), `retry` (failed, tried again later) or `dead` (dead-lettered).
 */
export const consumeOne = (subscriber: Subscriber, settings: Settings) => {
  const { sql } = subscriber
  return sql.withTransaction(Effect.gen(function*() {
    const [row] = yield* sql<Claimed>`
      SELECT message_id AS id, publisher, event, aggregate, seq::text AS seq, payload,
             published_at AS "publishedAt", attempts
      FROM event_deliveries d
      WHERE next_attempt_at <= clock_timestamp()
        AND NOT EXISTS (SELECT 1 FROM event_deliveries e
                        WHERE e.publisher = d.publisher AND e.aggregate = d.aggregate AND e.seq < d.seq)
      ORDER BY position LIMIT 1 FOR UPDATE SKIP LOCKED`
    if (row === undefined) return "idle" as const
    const attempt = row.attempts + 1
    const subscription = subscriber.subscriptions.get(Event.keyOf({ publisher: row.publisher, name: row.event }))
    const exit = subscription === undefined
      ? Exit.die(new Error(`${subscriber.module} no longer subscribes to ${row.publisher}'s ${row.event}`))
      : yield* Effect.exit(Inbox.apply(sql, subscription, row, attempt, subscriber.context))
    if (Exit.isSuccess(exit)) {
      yield* sql`DELETE FROM event_deliveries WHERE message_id = ${row.id}`
      return "applied" as const
    }
    if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
    const error = Inbox.describe(exit.cause)
    if (attempt >= settings.maxDeliveries) {
      yield* Inbox.deadLetter(sql, row, attempt, error)
      yield* sql`DELETE FROM event_deliveries WHERE message_id = ${row.id}`
      yield* Effect.logWarning(`${row.publisher}'s ${row.event} ${row.id} dead-lettered after ${attempt} failed deliveries`, exit.cause)
      return "dead" as const
    }
    yield* sql`UPDATE event_deliveries SET attempts = ${attempt}, last_error = ${error},
      next_attempt_at = clock_timestamp() + ${Duration.toMillis(backoff(settings, attempt))} * interval '1 millisecond'
      WHERE message_id = ${row.id}`
    return "retry" as const
  }))
}

/**
 * The shortest wait between two looks at a queue whose next message is due but was not claimed
 * (another instance holds it).
 */
const MIN_WAIT = Duration.millis(20)

/** How long until the earliest head of an aggregate is due (`undefined`: the queue is empty). */
const nextDue = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ readonly ms: number | null }>`
      SELECT (EXTRACT(EPOCH FROM (min(next_attempt_at) - clock_timestamp())) * 1000)::float8 AS ms
      FROM event_deliveries d
      WHERE NOT EXISTS (SELECT 1 FROM event_deliveries e
                        WHERE e.publisher = d.publisher AND e.aggregate = d.aggregate AND e.seq < d.seq)`,
    ([row]) => (row?.ms === null || row?.ms === undefined ? undefined : Duration.max(MIN_WAIT, Duration.millis(row.ms)))
  )

/**
 * Consumes `subscriber`'s queue for as long as it runs: message after message while some are
 * due, else waits (`wait`: a wake-up, or the given time) until the next is due or
 * `pollInterval` (messages queued by another instance's relay). A failed turn is logged and
 * tried again after the poll interval.
 */
export const consume = (
  subscriber: Subscriber,
  settings: Settings & {
    readonly pollInterval: Duration.Duration
    readonly wait: (atMost: Duration.Duration) => Effect.Effect<void>
  }
) =>
  Effect.gen(function*() {
    while (true) {
      const outcome = yield* consumeOne(subscriber, settings).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause)
            : Effect.as(Effect.logWarning(`${subscriber.module}: consuming events failed; trying again`, cause), "failed" as const)
        )
      )
      if (outcome === "applied" || outcome === "retry" || outcome === "dead") continue
      const due = outcome === "idle"
        ? yield* Effect.orElseSucceed(nextDue(subscriber.sql), () => undefined)
        : undefined
      yield* settings.wait(due === undefined ? settings.pollInterval : Duration.min(due, settings.pollInterval))
    }
  }).pipe(Effect.annotateLogs("module", subscriber.module))
