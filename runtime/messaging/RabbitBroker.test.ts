/**
 * The RabbitMQ broker against the local broker and PostgreSQL: what a relay publishes reaches
 * the subscriber's own queue table (`event_deliveries`) through the subscriber's RabbitMQ queue,
 * each message once however often it is published, and wakes its consumer; a message of another
 * event on the queue is not taken in.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Redacted, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { Connection } from "rabbitmq-client"
import { afterAll, describe, expect, it } from "vitest"
import * as Services from "../testing/Services.ts"
import type { Message } from "./Broker.ts"
import * as Event from "./Event.ts"
import type * as InProcessBroker from "./InProcessBroker.ts"
import * as MessagingMigrations from "./MessagingMigrations.ts"
import * as Rabbit from "./Rabbit.ts"
import * as RabbitBroker from "./RabbitBroker.ts"

const rabbit = await Services.findRabbit()
const postgres = await Services.findPostgres()
const ready = rabbit.ok && postgres.ok

const id = randomUUID().slice(0, 8)
const Happened = Event.make({
  publisher: `rbpub${id}`,
  name: "Happened",
  payload: Schema.Struct({ aggregate: Schema.String, n: Schema.Int }),
  aggregate: (p) => p.aggregate
})
const Other = Event.make({ ...Happened, name: "Other" })
const subscriberName = `rbsub${id}`
const queue = RabbitBroker.queueOf(subscriberName, Happened.publisher, Happened.name)

const databases: Array<{ drop: () => Promise<void> }> = []
afterAll(async () => {
  for (const database of databases) await database.drop()
  if (!rabbit.ok) return
  const admin = new Connection(rabbit.value)
  await admin.queueDelete({ queue }).catch(() => undefined)
  await admin.queueDelete({ queue: Rabbit.deadQueueOf(queue) }).catch(() => undefined)
  await admin.close()
})

const messageOf = (n: number, event: Event.Event.Any = Happened): Message => ({
  id: randomUUID(),
  publisher: event.publisher,
  event: event.name,
  aggregate: "a-1",
  seq: String(n),
  payload: { aggregate: "a-1", n },
  publishedAt: new Date(),
  aggregateSeq: n,
  // Before it, the aggregate's events of another name, which this subscriber does not take.
  preceding: n === 1 ? { Other: 1 } : { Happened: n - 1, Other: n + 100 },
  traceparent: `00-${"ab".repeat(16)}-${String(n).padStart(16, "0")}-01`
})

interface Row {
  readonly message_id: string
  readonly seq: string
  readonly payload: unknown
  readonly aggregate_seq: number | null
  readonly after_seq: number | null
  readonly traceparent: string | null
}

describe.skipIf(!ready)("RabbitMQ broker", () => {
  it("brings each published message once into the subscriber's queue table, and wakes its consumer", async () => {
    const database = await Services.createDatabase((postgres as { value: string }).value)
    databases.push(database)
    let wakes = 0
    const rows = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const sql = yield* PgClient.make({ url: Redacted.make(database.url), maxConnections: 4 })
      for (const migration of MessagingMigrations.source.migrations) yield* sql.unsafe(migration.sql)
      const subscriber: InProcessBroker.Subscriber = {
        module: subscriberName,
        sql,
        subscriptions: new Map([[Event.keyOf(Happened), Event.on(Happened, () => Effect.void)]]),
        context: Context.make(SqlClient.SqlClient, sql) as Context.Context<never>,
        wake: () => void wakes++,
        notify: true
      }
      const connection = yield* Rabbit.make(Redacted.make((rabbit as { value: string }).value), { connectionName: "tessera-test" })
      yield* RabbitBroker.consume(connection, subscriber, { prefetch: 8 })
      expect((yield* Rabbit.awaitReady(connection, "10 seconds")).ready).toBe(true)
      yield* Effect.sleep("300 millis") // the queue is declared once the consumer's channel is up
      const broker = RabbitBroker.make(connection)
      const messages = Array.from({ length: 100 }, (_, i) => messageOf(i + 1))
      yield* broker.publish(messages)
      // A relay that hands a batch again (it crashed before marking it): nothing new.
      yield* broker.publish(messages.slice(0, 10))
      // Another event of the publisher on this queue's routing key is not this queue's to take in.
      yield* connection.publish([{
        routingKey: RabbitBroker.routingKeyOf(Happened.publisher, Happened.name),
        messageId: "stray",
        body: { ...messageOf(0, Other), publishedAt: new Date().toISOString() }
      }])
      const deadline = Date.now() + 20_000
      let found: ReadonlyArray<Row> = []
      while (Date.now() < deadline) {
        found = yield* sql<Row>`SELECT message_id, seq::text AS seq, payload, aggregate_seq::int AS aggregate_seq, after_seq::int AS after_seq, traceparent
          FROM event_deliveries ORDER BY position`
        if (found.length >= 100) break
        yield* Effect.sleep("50 millis")
      }
      yield* Effect.sleep("500 millis") // the duplicates have arrived too
      found = yield* sql<Row>`SELECT message_id, seq::text AS seq, payload, aggregate_seq::int AS aggregate_seq, after_seq::int AS after_seq, traceparent
          FROM event_deliveries ORDER BY position`
      return { found, messages }
    })).pipe(Effect.provide(Reactivity.layer)))
    expect(rows.found.map((r) => r.message_id).sort()).toEqual(rows.messages.map((m) => m.id).sort())
    // Taken in with their place in the publisher's outbox, which the consumer orders them by.
    expect(rows.found.find((r) => r.seq === "5")?.payload).toEqual({ aggregate: "a-1", n: 5 })
    // With its order and trace from the headers: after the 4th, the events it does not take aside.
    expect(rows.found.find((r) => r.seq === "5")).toMatchObject({
      aggregate_seq: 5,
      after_seq: 4,
      traceparent: `00-${"ab".repeat(16)}-${"5".padStart(16, "0")}-01`
    })
    expect(rows.found.find((r) => r.seq === "1")).toMatchObject({ aggregate_seq: 1, after_seq: null })
    expect(wakes).toBeGreaterThan(0)
  })
})
