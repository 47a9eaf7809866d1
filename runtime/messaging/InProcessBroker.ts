/**
 * The broker of a process with no message broker to talk to: it delivers each message to the
 * subscribers of its event that run in this process, each over its own database.
 *
 * `make(...).publish` writes the messages into each subscriber's `event_deliveries` (its queue,
 * in its own schema, written with its own client; a message it already holds is not written
 * twice) and wakes its consumer. `consume` then applies them in batches (Inbox.ts): the
 * head of each aggregate only (the lowest `seq` of that publisher's aggregate still queued), so an
 * aggregate's events apply in order while a failing one waits, and the others go on. A delivery
 * that fails is tried again after `TESSERA_EVENTS_RETRY_BACKOFF`, doubling up to a minute; the
 * `TESSERA_EVENTS_MAX_DELIVERIES`-th failure dead-letters it, and its aggregate's next event goes.
 *
 * An aggregate's order holds whatever order messages arrive in (RabbitMQ may hand one back after
 * a later one, across an outage or from two queues): a message carries its number among its
 * aggregate's events (`aggregateSeq`) and the numbers of the latest earlier event of each name
 * (`preceding`), from which its `after_seq` here is the latest among the events this subscriber
 * subscribes to. It is not applied before `event_aggregates` has that number for its aggregate
 * (the highest this subscriber applied or dead-lettered), or, for a predecessor that never comes
 * (dead at the broker, published before this module subscribed to its event), before
 * `TESSERA_EVENTS_ORDER_HOLD` has passed since it was queued. A message with no number (published
 * before the numbers existed, or queued again by hand) waits for nothing.
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

/**
 * The number of the event of `message`'s aggregate that `subscriber` must have applied before it:
 * the latest of the earlier ones it subscribes to (`null`: none).
 */
export const afterSeq = (subscriber: Pick<Subscriber, "subscriptions">, message: Message): number | null => {
  let after: number | null = null
  for (const [event, seq] of Object.entries(message.preceding ?? {})) {
    if (subscriber.subscriptions.has(Event.keyOf({ publisher: message.publisher, name: event })) && (after === null || seq > after)) {
      after = seq
    }
  }
  return after
}

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
        published_at: m.publishedAt,
        aggregate_seq: m.aggregateSeq ?? null,
        after_seq: m.aggregateSeq === undefined ? null : afterSeq(subscriber, m),
        traceparent: m.traceparent ?? null
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
  /** How long a message waits for its aggregate's earlier event before it goes without it. */
  readonly orderHold: Duration.Duration
}

interface Claimed extends Message {
  readonly attempts: number
  readonly late: boolean
}

/**
 * Whether the queued message `d` may be applied as far as its aggregate's order goes: it waits for
 * nothing, its predecessor was applied or dead-lettered, or it has waited `holdMs`.
 */
const inOrder = (sql: SqlClient.SqlClient, holdMs: number) =>
  sql`(d.after_seq IS NULL
       OR EXISTS (SELECT 1 FROM event_aggregates s
                  WHERE s.publisher = d.publisher AND s.aggregate = d.aggregate AND s.applied_seq >= d.after_seq)
       OR d.queued_at <= clock_timestamp() - ${holdMs} * interval '1 millisecond')`

/**
 * Records that the aggregates of `messages` (at most one message each) have been applied (or
 * dead-lettered) up to their numbers, never lower.
 */
const passed = (sql: SqlClient.SqlClient, messages: ReadonlyArray<Message>) => {
  // One row per aggregate (a statement may not update a row twice).
  const highest = new Map<string, { publisher: string; aggregate: string; applied_seq: number }>()
  for (const m of messages) {
    if (m.aggregateSeq === undefined) continue
    const key = JSON.stringify([m.publisher, m.aggregate])
    const seen = highest.get(key)
    if (seen === undefined || seen.applied_seq < m.aggregateSeq) {
      highest.set(key, { publisher: m.publisher, aggregate: m.aggregate, applied_seq: m.aggregateSeq })
    }
  }
  const numbered = [...highest.values()]
  return numbered.length === 0
    ? Effect.void
    : Effect.asVoid(sql`
      INSERT INTO event_aggregates AS s ${sql.insert(numbered)}
      ON CONFLICT (publisher, aggregate) DO UPDATE SET applied_seq = GREATEST(s.applied_seq, EXCLUDED.applied_seq)`)
}

const MAX_BACKOFF = Duration.minutes(1)

/** The wait before the delivery after the `attempt`-th failed. */
export const backoff = (settings: Settings, attempt: number) =>
  Duration.min(Duration.times(settings.retryBackoff, 2 ** Math.min(attempt - 1, 20)), MAX_BACKOFF)

type Outcome = "applied" | "retry" | "dead"

/**
 * Applies the due messages of `subscriber`'s queue, up to `limit`, in one transaction: the due
 * heads of as many aggregates (never two of one aggregate: the next of an aggregate is a head only
 * once this one is gone), each in a savepoint of its own (Inbox.apply), so a failing one is
 * recorded (tried again later, or dead-lettered) beside the others that commit. The outcome of
 * each, in the queue's order (empty: none due).
 */
export const consumeBatch = (subscriber: Subscriber, settings: Settings, limit: number) => {
  const { sql } = subscriber
  const holdMs = Duration.toMillis(settings.orderHold)
  return sql.withTransaction(Effect.gen(function*() {
    const claimed = yield* sql<Omit<Claimed, "aggregateSeq" | "traceparent"> & {
      readonly aggregateSeq: number | null
      readonly traceparent: string | null
    }>`
      SELECT message_id AS id, publisher, event, aggregate, seq::text AS seq, payload,
             published_at AS "publishedAt", attempts, aggregate_seq::float8 AS "aggregateSeq", traceparent,
             COALESCE(aggregate_seq <= (SELECT applied_seq FROM event_aggregates s
                                        WHERE s.publisher = d.publisher AND s.aggregate = d.aggregate), false) AS late
      FROM event_deliveries d
      WHERE next_attempt_at <= clock_timestamp()
        AND NOT EXISTS (SELECT 1 FROM event_deliveries e
                        WHERE e.publisher = d.publisher AND e.aggregate = d.aggregate AND e.seq < d.seq)
        AND ${inOrder(sql, holdMs)}
      ORDER BY position LIMIT ${limit} FOR UPDATE SKIP LOCKED`
    const rows = claimed.map((found): Claimed => ({
      ...found,
      aggregateSeq: found.aggregateSeq ?? undefined,
      traceparent: found.traceparent ?? undefined
    }))
    const subscriptionOf = (row: Claimed) => subscriber.subscriptions.get(Event.keyOf({ publisher: row.publisher, name: row.event }))
    const warnIfLate = (row: Claimed) =>
      row.late
        ? Effect.logWarning(
          `${row.publisher}'s ${row.event} ${row.id} (${row.aggregate} #${row.aggregateSeq}) applied after a later event of its aggregate`
        )
        : Effect.void
    const outcomes: Array<Outcome> = []
    /** The messages gone from the queue (applied or dead-lettered): deleted, their aggregates' numbers recorded. */
    const through: Array<Message> = []

    // First all at once (Inbox.applyAll: one statement for their inbox rows, no savepoint each);
    // only when one of them fails, one by one, each in its own savepoint, to record which.
    const deliveries = rows.flatMap((row) => {
      const subscription = subscriptionOf(row)
      return subscription === undefined ? [] : [{ subscription, message: row, attempt: row.attempts + 1 }]
    })
    const together = rows.length > 1 && deliveries.length === rows.length
      ? yield* Effect.exit(Inbox.applyAll(sql, deliveries, subscriber.context))
      : undefined
    if (together !== undefined && Exit.isFailure(together) && Cause.isInterruptedOnly(together.cause)) {
      return yield* Effect.failCause(together.cause)
    }
    if (together !== undefined && Exit.isSuccess(together)) {
      for (const [i, row] of rows.entries()) {
        if (together.value[i] === "applied") yield* warnIfLate(row)
        through.push(row)
        outcomes.push("applied")
      }
    } else for (const row of rows) {
      const attempt = row.attempts + 1
      const subscription = subscriptionOf(row)
      const exit = subscription === undefined
        ? Exit.die(new Error(`${subscriber.module} no longer subscribes to ${row.publisher}'s ${row.event}`))
        : yield* Effect.exit(Inbox.apply(sql, subscription, row, attempt, subscriber.context))
      if (Exit.isSuccess(exit)) {
        if (exit.value === "applied") yield* warnIfLate(row)
        through.push(row)
        outcomes.push("applied")
        continue
      }
      if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
      const error = Inbox.describe(exit.cause)
      if (attempt >= settings.maxDeliveries) {
        yield* Inbox.deadLetter(sql, row, attempt, error)
        // Its aggregate's next events do not wait for it.
        through.push(row)
        yield* Effect.logWarning(`${row.publisher}'s ${row.event} ${row.id} dead-lettered after ${attempt} failed deliveries`, exit.cause)
        outcomes.push("dead")
        continue
      }
      yield* sql`UPDATE event_deliveries SET attempts = ${attempt}, last_error = ${error},
        next_attempt_at = clock_timestamp() + ${Duration.toMillis(backoff(settings, attempt))} * interval '1 millisecond'
        WHERE message_id = ${row.id}`
      outcomes.push("retry")
    }
    yield* passed(sql, through)
    if (through.length > 0) yield* sql`DELETE FROM event_deliveries WHERE ${sql.in("message_id", through.map((m) => m.id))}`
    return outcomes
  }))
}

/**
 * Applies the next message of `subscriber`'s queue that is due, if any: `idle` (none due),
 * `applied` (or found applied), `retry` (failed, tried again later) or `dead` (dead-lettered).
 */
export const consumeOne = (subscriber: Subscriber, settings: Settings) =>
  Effect.map(consumeBatch(subscriber, settings, 1), ([outcome]) => outcome ?? ("idle" as const))

/**
 * The shortest wait between two looks at a queue whose next message is due but was not claimed
 * (another instance holds it).
 */
const MIN_WAIT = Duration.millis(20)

/**
 * How long until the earliest head of an aggregate is due (`undefined`: the queue is empty); one
 * waiting for its predecessor is due when its hold ends (the predecessor's arrival wakes the
 * consumer anyway).
 */
const nextDue = (sql: SqlClient.SqlClient, holdMs: number) =>
  Effect.map(
    sql<{ readonly ms: number | null }>`
      SELECT (EXTRACT(EPOCH FROM (min(CASE WHEN ${inOrder(sql, holdMs)} THEN next_attempt_at
                                           ELSE GREATEST(next_attempt_at, queued_at + ${holdMs} * interval '1 millisecond') END)
                                  - clock_timestamp())) * 1000)::float8 AS ms
      FROM event_deliveries d
      WHERE NOT EXISTS (SELECT 1 FROM event_deliveries e
                        WHERE e.publisher = d.publisher AND e.aggregate = d.aggregate AND e.seq < d.seq)`,
    ([row]) => (row?.ms === null || row?.ms === undefined ? undefined : Duration.max(MIN_WAIT, Duration.millis(row.ms)))
  )

/** The most messages (each of another aggregate) applied in one transaction. */
export const APPLY_BATCH = 50

/**
 * The transactions of a consumer applying at once (each its own batch: other aggregates, rows
 * claimed SKIP LOCKED); few, so that its connections leave the pool (TESSERA_DB_POOL_SIZE) to the
 * intake and the requests.
 */
export const APPLY_CONCURRENCY = 2

/**
 * Consumes `subscriber`'s queue for as long as it runs: batch after batch (`consumeBatch`) while
 * some are due, else waits (`wait`: a wake-up, or the given time) until the next is due or
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
      const turns = yield* Effect.all(
        Array.from({ length: APPLY_CONCURRENCY }, () =>
          consumeBatch(subscriber, settings, APPLY_BATCH).pipe(
            Effect.catchAllCause((cause) =>
              Cause.isInterruptedOnly(cause)
                ? Effect.failCause(cause)
                : Effect.as(Effect.logWarning(`${subscriber.module}: consuming events failed; trying again`, cause), "failed" as const)
            )
          )),
        { concurrency: "unbounded" }
      )
      if (turns.some((outcomes) => outcomes !== "failed" && outcomes.length > 0)) continue
      const due = turns.every((outcomes) => outcomes !== "failed")
        ? yield* Effect.orElseSucceed(nextDue(subscriber.sql, Duration.toMillis(settings.orderHold)), () => undefined)
        : undefined
      yield* settings.wait(due === undefined ? settings.pollInterval : Duration.min(due, settings.pollInterval))
    }
  }).pipe(Effect.annotateLogs("module", subscriber.module))
