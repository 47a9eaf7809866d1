/**
 * The messaging source's migration 3 (`order_and_trace`) on a schema that already holds events
 * (a deployment from before it): the rows it finds keep their place, carry no numbers, and are
 * applied waiting for nothing; what is published after it is numbered from 1.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Redacted, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { afterAll, describe, expect, it } from "vitest"
import * as AfterCommit from "../db/AfterCommit.ts"
import * as Services from "../testing/Services.ts"
import * as Event from "./Event.ts"
import * as InProcessBroker from "./InProcessBroker.ts"
import * as MessagingMigrations from "./MessagingMigrations.ts"
import * as Outbox from "./Outbox.ts"

const postgres = await Services.findPostgres()
const databases: Array<{ drop: () => Promise<void> }> = []
afterAll(async () => {
  for (const database of databases) await database.drop()
})

const Happened = Event.make({
  publisher: "legacy",
  name: "Happened",
  payload: Schema.Struct({ aggregate: Schema.String, n: Schema.Int }),
  aggregate: (p) => p.aggregate
})

describe.skipIf(!postgres.ok)("the messaging migration that numbers events", () => {
  it("migrates a schema holding events: old rows wait for nothing, new ones are numbered from 1", async () => {
    const database = await Services.createDatabase((postgres as { value: string }).value)
    databases.push(database)
    const applied: Array<number> = []
    const result = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const sql = AfterCommit.install(yield* PgClient.make({ url: Redacted.make(database.url), maxConnections: 2 }))
      const [first, second, third] = MessagingMigrations.source.migrations
      yield* sql.unsafe(first!.sql)
      // What a deployment before it holds: a published outbox row, and a queued delivery of the
      // aggregate's second event (its first applied long ago).
      yield* sql`INSERT INTO outbox (id, event, aggregate, payload, published_at)
        VALUES (${randomUUID()}, 'Happened', 'a-1', '{"aggregate":"a-1","n":1}'::jsonb, clock_timestamp())`
      yield* sql`INSERT INTO event_deliveries (message_id, publisher, event, aggregate, seq, payload, published_at)
        VALUES (${randomUUID()}, 'legacy', 'Happened', 'a-1', 2, '{"aggregate":"a-1","n":2}'::jsonb, clock_timestamp())`
      yield* sql.unsafe(second!.sql)
      yield* sql.unsafe(third!.sql)

      const subscriber: InProcessBroker.Subscriber = {
        module: "legacysub",
        sql,
        subscriptions: new Map([[Event.keyOf(Happened), Event.on(Happened, (p) => Effect.sync(() => void applied.push(p.n)))]]),
        context: Context.make(SqlClient.SqlClient, sql) as Context.Context<never>,
        wake: () => {},
        notify: false
      }
      const settings = { maxDeliveries: 3, retryBackoff: Duration.millis(100), orderHold: Duration.hours(1) }
      const outcome = yield* InProcessBroker.consumeOne(subscriber, settings)

      // Published after the migration: the aggregate's first number.
      const outbox = Outbox.make("legacy", sql, [Happened], () => {}, { notify: false })
      yield* sql.withTransaction(outbox.publish(Happened, { aggregate: "a-1", n: 3 }))
      const rows = yield* sql<{ n: number; aggregate_seq: number | null }>`
        SELECT (payload->>'n')::int AS n, aggregate_seq::int AS aggregate_seq FROM outbox ORDER BY seq`
      return { outcome, rows }
    })).pipe(Effect.provide(Reactivity.layer)))
    expect(result.outcome).toBe("applied")
    expect(applied).toEqual([2])
    expect(result.rows).toEqual([{ n: 1, aggregate_seq: null }, { n: 3, aggregate_seq: 1 }])
  })
})
