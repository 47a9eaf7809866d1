/**
 * `npm run bench`, events section (issue 13): events through RabbitMQ from a publisher's outbox
 * to a subscriber's inbox, beside raw confirmed publishes on the same broker in the same run.
 *
 * The publisher (`toypub`) and the subscriber (`toysub`) of runtime/testing/MessagingToy.ts each
 * run in a process of their own (MessagingToyHost.ts compiled by ToyHosts.ts: `tessera serve` with the toys), on one
 * PostgreSQL database and a RabbitMQ virtual host of their own. The bench writes outbox rows as
 * `Outbox.publish` does (a row, and a notification of the relay, committed together), straight
 * into toypub's outbox: what it measures starts at the outbox.
 *
 * - Throughput: BENCH_EVENTS rows over 100 aggregates committed in one transaction; events per
 *   second from that commit to the last one applied in toysub's inbox (its `applied_at`, the
 *   database's clock), and, on the way, to the last marked published (relayed and confirmed).
 *   At most THROUGHPUT_CAP_SECONDS: then what was applied by then counts, and the rest of the
 *   backlog is dropped (the subscriber's RabbitMQ queue purged, its queue table emptied).
 *   Ceiling: rabbitmq-client publishing as many messages of the same size, persistent, to a
 *   quorum queue (as a subscription's), on a confirm channel with RAW_IN_FLIGHT in flight.
 *   Goal: >= 50 % of the ceiling.
 * - Lag: a steady publish load (BENCH_EVENTS_RATE events a second, by default half the
 *   throughput just measured, so that the subscriber keeps up; each event its own transaction,
 *   for BENCH_SECONDS), the time from each row's insert (a moment before its commit) to its
 *   inbox record, p50 and p99, and the share of it up to RabbitMQ's confirm (the relay's). A steady publish load rather than a steady order load: orders on
 *   this 2-core machine would measure the saga (bench/orders.bench.ts does), not the events.
 *
 * A report, not a test: it exits 0 when a goal is missed and says MISSED. BENCH_ONLY=events runs
 * this section alone. Skipped, saying why, without PostgreSQL or RabbitMQ.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Redacted, Scope } from "effect"
import * as os from "node:os"
import { Connection } from "rabbitmq-client"
import * as RabbitBroker from "../runtime/messaging/RabbitBroker.ts"
import * as Build from "../runtime/release/Build.ts"
import * as Processes from "../runtime/testing/Processes.ts"
import * as Toy from "../runtime/testing/MessagingToy.ts"
import * as Services from "../runtime/testing/Services.ts"
import * as ToyHosts from "../runtime/testing/ToyHosts.ts"

const ONLY = process.env.BENCH_ONLY
const EVENTS = Number(process.env.BENCH_EVENTS ?? 2_000)
const RATE = process.env.BENCH_EVENTS_RATE === undefined ? undefined : Number(process.env.BENCH_EVENTS_RATE)
const THROUGHPUT_CAP_SECONDS = 45
/** Events sent and waited for before measuring. */
const WARM = 200
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const AGGREGATES = 100
/** Raw publishes in flight at once. */
const RAW_IN_FLIGHT = 1_000
const CEILING_TARGET = 50
/** The bench's own connections: the steady load's transactions run up to this many at once, so a slow commit does not slow the load. */
const POOL = 4
const SECRET = "events-bench-service-secret-events-bench"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** A client of the database at `url` until `close`. */
const open = async (url: string) => {
  const scope = Effect.runSync(Scope.make())
  const sql = await Effect.runPromise(
    Scope.extend(PgClient.make({ url: Redacted.make(url), maxConnections: POOL }), scope).pipe(Effect.provide(Reactivity.layer))
  )
  return { sql, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
type Sql = PgClient.PgClient

/** Inserts `count` outbox rows (`first`.. on) in one transaction that also wakes the relays, as Outbox.publish does. */
const publish = (sql: Sql, first: number, count: number) =>
  Effect.runPromise(
    sql.withTransaction(Effect.gen(function*() {
      yield* sql`
        INSERT INTO toypub.outbox (id, event, aggregate, payload)
        SELECT gen_random_uuid(), 'ToyHappened', 'bench-' || (i % ${AGGREGATES}),
               jsonb_build_object('aggregate', 'bench-' || (i % ${AGGREGATES}), 'n', i, 'failTimes', 0)
        FROM generate_series(${first}::int, ${first + count - 1}::int) AS i`
      yield* sql`SELECT pg_notify('tessera_outbox_toypub', 'published')`
    }))
  )

/** How many of the events numbered `from` on toysub applied. */
const applied = (sql: Sql, from: number) =>
  Effect.runPromise(Effect.map(
    sql<{ n: number }>`SELECT count(*)::int AS n FROM toysub.inbox i JOIN toypub.outbox o ON o.id = i.message_id
                       WHERE (o.payload->>'n')::int >= ${from}`,
    ([row]) => row!.n
  ))

/** Waits until `count` of the events numbered `from` on are applied; fails after `timeoutMs`. */
const waitApplied = async (sql: Sql, count: number, timeoutMs: number, from: number) => {
  const deadline = Date.now() + timeoutMs
  let said = Date.now()
  while ((await applied(sql, from)) < count) {
    if (Date.now() > deadline) throw new Error(`fewer than ${count} events applied after ${timeoutMs} ms`)
    if (process.env.BENCH_EVENTS_PROGRESS && Date.now() - said > 2_000) {
      said = Date.now()
      const [row] = await Effect.runPromise(sql<{ published: number; queued: number; applied: number }>`
        SELECT (SELECT count(*)::int FROM toypub.outbox WHERE published_at IS NOT NULL) AS published,
               (SELECT count(*)::int FROM toysub.event_deliveries) AS queued,
               (SELECT count(*)::int FROM toysub.inbox) AS applied`)
      console.error(`  published ${row!.published}, queued at the subscriber ${row!.queued}, applied ${row!.applied}`)
    }
    await sleep(100)
  }
}

/** Confirmed publishes per second with rabbitmq-client: `count` messages of `body`, RAW_IN_FLIGHT at a time. */
const raw = async (amqpUrl: string, count: number, body: object) => {
  const connection = new Connection(amqpUrl)
  const queue = "bench.raw"
  const exchange = "bench.raw"
  try {
    await connection.exchangeDeclare({ exchange, type: "topic", durable: true })
    await connection.queueDeclare({ queue, durable: true, arguments: { "x-queue-type": "quorum" } })
    await connection.queueBind({ queue, exchange, routingKey: "#" })
    const publisher = connection.createPublisher({ confirm: true })
    const send = (i: number) =>
      publisher.send({ exchange, routingKey: "raw.event", messageId: crypto.randomUUID(), durable: true, mandatory: true, contentType: "application/json" }, { ...body, n: i })
    for (let i = 0; i < 200; i++) await send(i)
    const started = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: RAW_IN_FLIGHT }, async () => {
      while (next < count) await send(next++)
    }))
    const perSecond = count / ((performance.now() - started) / 1000)
    await publisher.close()
    await connection.queueDelete({ queue })
    await connection.exchangeDelete({ exchange })
    return perSecond
  } finally {
    await connection.close()
  }
}

const main = async () => {
  if (ONLY !== undefined && ONLY !== "events") return
  const postgres = await Services.findPostgres()
  const rabbit = await Services.findRabbit()
  if (!postgres.ok || !rabbit.ok) {
    console.log(`events: skipped (${!postgres.ok ? postgres.reason : ""}${!rabbit.ok ? rabbit.reason : ""})`)
    return
  }
  // The toy hosts, compiled as the release is (so the release first: its files in dist/ are used).
  if (!Build.isFresh()) await Build.build()
  await ToyHosts.build(Build.bundle)
  console.log(
    `tessera events bench: node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}, ` +
      `${fmt(EVENTS)} events at once, then a steady load for ${SECONDS} s`
  )
  const database = await Services.createDatabase(postgres.value)
  const broker = await Services.isolatedRabbit(rabbit.value)
  const env = { DATABASE_URL: database.url, AMQP_URL: broker.url, TESSERA_SERVICE_SECRET: SECRET, TESSERA_EVENTS_POLL_INTERVAL: "1 second" }
  const servers: Array<Processes.Server> = []
  const { sql, close } = await open(database.url)
  try {
    // The subscriber first, so that its queue is bound before anything is published.
    servers.push(await Toy.spawnHost("toysub", env))
    await Processes.waitReady(servers[0]!)
    servers.push(await Toy.spawnHost("toypub", env))
    await Processes.waitReady(servers[1]!)

    // Warm-up.
    await publish(sql, 1, WARM)
    await waitApplied(sql, WARM, 60_000, 1)

    // Throughput: a backlog committed at once, relayed and applied.
    console.error("events, outbox → inbox ...")
    await publish(sql, WARM + 1, EVENTS)
    const capped = await waitApplied(sql, EVENTS, THROUGHPUT_CAP_SECONDS * 1000, WARM + 1).then(() => false, () => true)
    const through = await Effect.runPromise(
      Effect.map(
        sql<{ applied: number; relayed: number; appliedIn: number; relayedIn: number }>`
          SELECT count(i.message_id)::int AS applied, count(o.published_at)::int AS relayed,
                 EXTRACT(EPOCH FROM max(o.published_at) - min(o.created_at))::float8 AS "relayedIn",
                 EXTRACT(EPOCH FROM max(i.applied_at) - min(o.created_at))::float8 AS "appliedIn"
          FROM toypub.outbox o LEFT JOIN toysub.inbox i ON i.message_id = o.id
          WHERE (o.payload->>'n')::int > ${WARM} AND (o.payload->>'n')::int <= ${WARM + EVENTS}`,
        ([row]) => ({
          applied: row!.applied / row!.appliedIn,
          relayed: row!.relayed / row!.relayedIn,
          note: capped ? ` (${fmt(row!.applied)} of ${fmt(EVENTS)} applied when the ${THROUGHPUT_CAP_SECONDS} s cap was reached)` : ""
        })
      )
    )
    console.error(`  ${fmt(through.applied, 1)} events/s applied (${fmt(through.relayed)} events/s relayed and confirmed)${through.note}`)
    if (capped) {
      // The rest of the backlog would swamp the lag: dropped.
      const admin = new Connection(broker.url)
      await admin.queuePurge(RabbitBroker.queueOf("toysub", "toypub", "ToyHappened")).finally(() => admin.close())
      await Effect.runPromise(sql`DELETE FROM toysub.event_deliveries`)
      await sleep(1_000)
    }

    console.error("raw confirmed publishes ...")
    const body = { id: crypto.randomUUID(), publisher: "toypub", event: "ToyHappened", aggregate: "bench-1", seq: "123456", payload: { aggregate: "bench-1", n: 1, failTimes: 0 }, publishedAt: new Date().toISOString() }
    const ceiling = await raw(broker.url, EVENTS, body)
    console.error(`  ${fmt(ceiling)} publishes/s`)

    // Lag under a steady publish load: one transaction per event, `rate` a second.
    const rate = RATE ?? Math.max(1, Math.round(through.applied / 2))
    console.error(`events, lag at ${rate} events/s ...`)
    const first = WARM + EVENTS + 1
    const started = Date.now()
    let sent = 0
    const inFlight = new Set<Promise<void>>()
    while (Date.now() - started < SECONDS * 1000) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate)
      while (sent < due) {
        if (inFlight.size >= POOL) await Promise.race(inFlight)
        const published = publish(sql, first + sent++, 1).then(() => void inFlight.delete(published))
        inFlight.add(published)
      }
      await sleep(5)
    }
    await Promise.all(inFlight)
    await waitApplied(sql, sent, 60_000, first)
    const lags = await Effect.runPromise(
      Effect.map(
        sql<{ ms: number; relayedMs: number }>`
          SELECT (EXTRACT(EPOCH FROM i.applied_at - o.created_at) * 1000)::float8 AS ms,
                 (EXTRACT(EPOCH FROM o.published_at - o.created_at) * 1000)::float8 AS "relayedMs"
          FROM toypub.outbox o JOIN toysub.inbox i ON i.message_id = o.id
          WHERE (o.payload->>'n')::int >= ${first}`,
        (rows) => rows
      )
    ).then((rows) => ({ applied: rows.map((r) => r.ms), relayed: rows.map((r) => r.relayedMs) }))
    const achieved = sent / ((Date.now() - started) / 1000)

    const ratio = (100 * through.applied) / ceiling
    console.log()
    console.log(
      `${"events/s outbox → inbox through RabbitMQ vs raw confirmed publishes".padEnd(72)} ${fmt(ratio, 1).padStart(6)}%  >= ${CEILING_TARGET}%  ` +
        `${ratio >= CEILING_TARGET ? "yes" : "MISSED"}  ${fmt(through.applied, 1)} vs ${fmt(ceiling)} /s${through.note} (relayed and confirmed: ${fmt(through.relayed)} /s)`
    )
    console.log(
      `${"events/s outbox → RabbitMQ confirmed (the relay) vs raw confirmed publishes".padEnd(72)} ${fmt((100 * through.relayed) / ceiling, 1).padStart(6)}%  (no goal of its own)`
    )
    console.log(
      `${"outbox lag, commit → applied in the subscriber's inbox".padEnd(72)} p50 ${fmt(percentile(lags.applied, 50))} ms, p99 ${fmt(percentile(lags.applied, 99))} ms, ` +
        `max ${fmt(Math.max(...lags.applied))} ms  (${fmt(lags.applied.length)} events, steady publish load of ${fmt(achieved, 1)} events/s${RATE === undefined ? ", half the throughput" : ""})`
    )
    console.log(
      `${"  of which commit → confirmed by RabbitMQ (the relay)".padEnd(72)} p50 ${fmt(percentile(lags.relayed, 50))} ms, p99 ${fmt(percentile(lags.relayed, 99))} ms`
    )
    console.log()
    console.log(ratio >= CEILING_TARGET ? "summary: the events goal met" : "summary: the events goal MISSED")
  } finally {
    await close()
    await Promise.all(servers.map((server) => server.stop()))
    await database.drop()
    await broker.drop()
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
