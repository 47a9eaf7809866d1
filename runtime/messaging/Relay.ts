/**
 * The relay of one publishing module: hands the rows of its `outbox` to the broker (Broker.ts)
 * in `seq` order, a batch at a time, and marks them published once the broker has them.
 *
 * One instance of the module relays at a time: the holder of the lease in `outbox_relay`
 * (renewed once half of it has run, given up at shutdown; another instance takes it over once it has
 * expired, `LEASE` after its holder stopped), so that instances do not hand the same rows at once.
 * An instance frozen past its lease may hand a batch again after another has: duplicates, which
 * the subscribers' inboxes drop, and out of order, which their order per aggregate
 * (InProcessBroker.ts) undoes.
 *
 * It wakes when a publishing transaction of this process commits (Outbox.ts), and otherwise
 * every `TESSERA_EVENTS_POLL_INTERVAL` (events published by other instances).
 */
import type { SqlClient } from "@effect/sql"
import { Cause, Duration, Effect } from "effect"
import type { Broker, Message } from "./Broker.ts"

/** How long a relay's lease lasts without being renewed. */
export const LEASE = Duration.seconds(10)

/**
 * Outbox rows handed to the broker at once: all of them in flight together on RabbitMQ's confirm
 * channel, so a backlog moves at the broker's pace rather than one confirm round trip per 100.
 */
export const BATCH = 500

interface Row {
  readonly seq: string
  readonly id: string
  readonly event: string
  readonly aggregate: string
  readonly payload: unknown
  readonly createdAt: Date
  readonly aggregateSeq: number | null
  readonly preceding: Readonly<Record<string, number>> | null
  readonly traceparent: string | null
}

/**
 * Takes the lease when it is free or expired, renews it when this instance holds it and half of it
 * has run (so an idle relay writes every `LEASE / 2`, not at every turn); whether this instance
 * holds it now.
 */
const lease = (sql: SqlClient.SqlClient, instance: string) => {
  const ms = Duration.toMillis(LEASE)
  return Effect.map(
    sql<{ readonly held: boolean }>`
      WITH taken AS (
        UPDATE outbox_relay SET holder = ${instance}, expires_at = clock_timestamp() + ${ms} * interval '1 millisecond'
        WHERE expires_at < clock_timestamp()
           OR (holder = ${instance} AND expires_at < clock_timestamp() + ${ms / 2} * interval '1 millisecond')
        RETURNING holder)
      SELECT EXISTS (SELECT 1 FROM taken) OR (holder = ${instance} AND expires_at > clock_timestamp()) AS held
      FROM outbox_relay`,
    (rows) => rows[0]?.held === true
  )
}

/** Gives the lease up (`instance`'s, or whoever's), so that another instance takes over at once. */
export const release = (sql: SqlClient.SqlClient, instance?: string) =>
  Effect.ignore(
    instance === undefined
      ? sql`UPDATE outbox_relay SET holder = NULL, expires_at = '-infinity'`
      : sql`UPDATE outbox_relay SET holder = NULL, expires_at = '-infinity' WHERE holder = ${instance}`
  )

/**
 * One turn: hands the next batch to the broker and marks it published. The number of rows
 * relayed (0: nothing to do, or another instance holds the lease).
 */
export const turn = (options: {
  readonly module: string
  readonly sql: SqlClient.SqlClient
  readonly broker: Broker
  readonly instance: string
}) =>
  Effect.gen(function*() {
    const { sql } = options
    if (!(yield* lease(sql, options.instance))) return 0
    const rows = yield* sql<Row>`
      SELECT seq::text AS seq, id, event, aggregate, payload, created_at AS "createdAt",
             aggregate_seq::float8 AS "aggregateSeq", preceding, traceparent
      FROM outbox
      WHERE published_at IS NULL ORDER BY seq LIMIT ${BATCH}`
    if (rows.length === 0) return 0
    const messages = rows.map((row): Message => ({
      id: row.id,
      publisher: options.module,
      event: row.event,
      aggregate: row.aggregate,
      seq: row.seq,
      payload: row.payload,
      publishedAt: row.createdAt,
      aggregateSeq: row.aggregateSeq ?? undefined,
      preceding: row.preceding ?? undefined,
      traceparent: row.traceparent ?? undefined
    }))
    yield* options.broker.publish(messages)
    yield* sql`UPDATE outbox SET published_at = clock_timestamp() WHERE seq IN ${sql.in(rows.map((r) => r.seq))}`
    return rows.length
  })

/**
 * Relays for as long as it runs: a turn after another while there is work, else waits for
 * `wait` (a wake-up or the poll interval). A failed turn is logged and tried again after the wait.
 */
export const run = (options: {
  readonly module: string
  readonly sql: SqlClient.SqlClient
  readonly broker: Broker
  readonly instance: string
  readonly wait: Effect.Effect<void>
}) =>
  Effect.gen(function*() {
    while (true) {
      const relayed = yield* turn(options).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause)
            : Effect.as(Effect.logWarning(`${options.module}: relaying events failed; trying again`, cause), 0)
        )
      )
      if (relayed < BATCH) yield* options.wait
    }
  }).pipe(Effect.ensuring(release(options.sql, options.instance)), Effect.annotateLogs("module", options.module))
