/**
 * Two modules for the messaging layer's own tests: `toypub` publishes `ToyHappened` (one row of
 * its own and the event, in one transaction), `toysub` subscribes to it and records each event it
 * applies. A payload's `failTimes` makes the subscriber's handler fail its first deliveries of it,
 * until its aggregate is `fix`ed.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { Rpc, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { fileURLToPath } from "node:url"
import * as Module from "../Module.ts"
import * as Event from "../messaging/Event.ts"
import * as Inbox from "../messaging/Inbox.ts"
import * as InProcessBroker from "../messaging/InProcessBroker.ts"
import * as Messaging from "../messaging/Messaging.ts"
import * as Outbox from "../messaging/Outbox.ts"
import * as Processes from "./Processes.ts"
import * as ToyHosts from "./ToyHosts.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))

export const ToyHappened = Event.make({
  publisher: "toypub",
  name: "ToyHappened",
  payload: Schema.Struct({
    aggregate: Schema.String,
    n: Schema.Number,
    /** The subscriber's handler fails this many deliveries of it. */
    failTimes: Schema.Number,
    /** How long the subscriber's handler takes (an optional field, added as a publisher may). */
    delayMs: Schema.optional(Schema.Number)
  }),
  aggregate: (event) => event.aggregate
})

const Happening = { aggregate: Schema.String, n: Schema.Number, failTimes: Schema.Number, delayMs: Schema.optional(Schema.Number) }

export class ToyRolledBack extends Schema.TaggedError<ToyRolledBack>()("ToyRolledBack", {}) {}

export class OutboxRow extends Schema.Class<OutboxRow>("toy/OutboxRow")({
  id: Schema.String,
  event: Schema.String,
  aggregate: Schema.String,
  published: Schema.Boolean
}) {}

export class PubRpcs extends RpcGroup.make(
  /** Records a happening and publishes it, in one transaction; with `rollback` the transaction then fails. */
  Rpc.make("happen", { payload: { ...Happening, rollback: Schema.Boolean }, error: ToyRolledBack }),
  /** Records and publishes several happenings, in order, in one transaction. */
  Rpc.make("happenAll", { payload: { items: Schema.Array(Schema.Struct(Happening)) } }),
  /** Publishes outside any transaction (refused). */
  Rpc.make("happenOutside", { payload: Happening }),
  /** The toy's own rows (how many happenings committed). */
  Rpc.make("things", { success: Schema.Number }),
  Rpc.make("outbox", { success: Schema.Array(OutboxRow) }),
  /** Marks every outbox row unpublished: as if the relay died after the broker had them. */
  Rpc.make("forgetPublished"),
  Rpc.make("purge", { payload: { retentionMs: Schema.Number } }),
  /** Hands the relay lease to `holder` for `forMs` (negative: expired), as another instance holding it. */
  Rpc.make("leaseTo", { payload: { holder: Schema.String, forMs: Schema.Number } })
) {}

export class PubClient extends Module.ModuleClient("toypub", PubRpcs)<PubClient>() {}

export class Applied extends Schema.Class<Applied>("toy/Applied")({
  messageId: Schema.String,
  aggregate: Schema.String,
  n: Schema.Number,
  attempt: Schema.Number,
  /** The trace its handler ran in. */
  traceId: Schema.NullOr(Schema.String)
}) {}

/** A toy message as a broker would hand it over, for delivering by hand (`deliver`). */
export class HandMade extends Schema.Class<HandMade>("toy/HandMade")({
  id: Schema.String,
  /** Its place in the publisher's outbox. */
  seq: Schema.Number,
  aggregate: Schema.String,
  n: Schema.Number,
  failTimes: Schema.Number,
  aggregateSeq: Schema.optional(Schema.Number),
  preceding: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Number }))
}) {}

/** `made` as a broker's message of `ToyHappened`. */
export const messageOf = (made: HandMade) => ({
  id: made.id,
  publisher: ToyHappened.publisher,
  event: ToyHappened.name,
  aggregate: made.aggregate,
  seq: String(made.seq),
  payload: { aggregate: made.aggregate, n: made.n, failTimes: made.failTimes },
  publishedAt: new Date(),
  aggregateSeq: made.aggregateSeq,
  preceding: made.preceding
})

export class DeadLetter extends Schema.Class<DeadLetter>("toy/DeadLetter")({
  messageId: Schema.String,
  event: Schema.String,
  aggregate: Schema.String,
  payload: Schema.Unknown,
  attempts: Schema.Number,
  error: Schema.String
}) {}

export class SubRpcs extends RpcGroup.make(
  /** Every event applied, in the order applied. */
  Rpc.make("applied", { success: Schema.Array(Applied) }),
  Rpc.make("deadLetters", { success: Schema.Array(DeadLetter) }),
  /** Message ids in the inbox. */
  Rpc.make("inbox", { success: Schema.Array(Schema.String) }),
  /** Messages still queued for it. */
  Rpc.make("queued", { success: Schema.Number }),
  Rpc.make("purge", { payload: { retentionMs: Schema.Number } }),
  /** From now on the handler applies the events of `aggregate`, whatever their `failTimes`. */
  Rpc.make("fix", { payload: { aggregate: Schema.String } }),
  /** What is queued and how far each aggregate got, for a test to show when it fails. */
  Rpc.make("queueState", { success: Schema.Unknown }),
  /** Queues `messages` for the subscriber as a broker would, in the order given (its consumer finds them at its next poll). */
  Rpc.make("deliver", { payload: { messages: Schema.Array(HandMade) } })
) {}

export class SubClient extends Module.ModuleClient("toysub", SubRpcs)<SubClient>() {}

const table = (statement: string) =>
  Layer.effectDiscard(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(Effect.orDie))

const pubHandlers = PubRpcs.toLayer(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const outbox = yield* Outbox.Outbox
  const happen = (payload: typeof ToyHappened.payload.Type) =>
    Effect.zipRight(
      outbox.publish(ToyHappened, payload),
      sql`INSERT INTO toy_things (aggregate, n) VALUES (${payload.aggregate}, ${payload.n})`.pipe(Effect.orDie)
    )
  return {
    happen: ({ rollback, ...payload }) =>
      sql.withTransaction(Effect.zipRight(happen(payload), rollback ? Effect.fail(new ToyRolledBack()) : Effect.void)).pipe(
        Effect.catchTag("SqlError", Effect.die)
      ),
    happenAll: ({ items }) => sql.withTransaction(Effect.forEach(items, happen, { discard: true })).pipe(Effect.orDie),
    happenOutside: (payload) => happen(payload),
    things: () => Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM toy_things`, ([row]) => row!.n).pipe(Effect.orDie),
    outbox: () =>
      sql<OutboxRow>`SELECT id, event, aggregate, published_at IS NOT NULL AS published FROM outbox ORDER BY seq`.pipe(
        Effect.map((rows) => rows.map((r) => new OutboxRow(r))),
        Effect.orDie
      ),
    forgetPublished: () => Effect.orDie(Effect.asVoid(sql`UPDATE outbox SET published_at = NULL`)),
    purge: ({ retentionMs }) => Effect.orDie(Messaging.purge(sql, Duration.millis(retentionMs))),
    leaseTo: ({ forMs, holder }) =>
      Effect.orDie(Effect.asVoid(
        sql`UPDATE outbox_relay SET holder = ${holder}, expires_at = clock_timestamp() + ${forMs} * interval '1 millisecond'`
      ))
  }
})).pipe(Layer.provideMerge(table("CREATE TABLE IF NOT EXISTS toy_things (aggregate text NOT NULL, n integer NOT NULL)")))

export const ToyPubModule = Module.make({
  client: PubClient,
  handlers: pubHandlers,
  publishes: [ToyHappened]
})

const subHandlers = SubRpcs.toLayer(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return {
    applied: () =>
      sql<Applied>`SELECT message_id AS "messageId", aggregate, n, attempt, trace_id AS "traceId" FROM toy_applied ORDER BY seq`.pipe(
        Effect.map((rows) => rows.map((r) => new Applied(r))),
        Effect.orDie
      ),
    deadLetters: () => Effect.map(Inbox.deadLetters(sql), (rows) => rows.map((r) => new DeadLetter(r))).pipe(Effect.orDie),
    inbox: () => Effect.map(sql<{ id: string }>`SELECT message_id AS id FROM inbox`, (rows) => rows.map((r) => r.id)).pipe(Effect.orDie),
    queued: () => Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM event_deliveries`, ([row]) => row!.n).pipe(Effect.orDie),
    purge: ({ retentionMs }) => Effect.orDie(Messaging.purge(sql, Duration.millis(retentionMs))),
    fix: ({ aggregate }) => Effect.orDie(Effect.asVoid(sql`INSERT INTO toy_fixed (aggregate) VALUES (${aggregate}) ON CONFLICT DO NOTHING`)),
    queueState: () =>
      Effect.all({
        queued: sql`SELECT message_id, aggregate, seq::text AS seq, aggregate_seq::float8 AS aggregate_seq, after_seq::float8 AS after_seq,
                           attempts, last_error, next_attempt_at, queued_at FROM event_deliveries ORDER BY position`,
        aggregates: sql`SELECT aggregate, applied_seq::float8 AS applied_seq FROM event_aggregates`,
        now: sql`SELECT clock_timestamp() AS now`
      }).pipe(Effect.orDie),
    deliver: ({ messages }) =>
      InProcessBroker.make([{
        module: "toysub",
        sql,
        subscriptions: new Map([[Event.keyOf(ToyHappened), onToyHappened]]),
        context: Context.empty(),
        wake: () => {},
        notify: false
      }]).publish(messages.map(messageOf)).pipe(Effect.orDie)
  }
})).pipe(Layer.provideMerge(table("CREATE TABLE IF NOT EXISTS toy_fixed (aggregate text PRIMARY KEY)")))
  .pipe(Layer.provideMerge(table(`CREATE TABLE IF NOT EXISTS toy_applied (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id uuid NOT NULL, aggregate text NOT NULL, n integer NOT NULL,
  attempt integer NOT NULL, trace_id text)`)))

/**
 * Records each event; fails a delivery while its attempt is at most the payload's `failTimes` and
 * its aggregate is not fixed.
 */
export const onToyHappened = Event.on(ToyHappened, (event, delivery) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (delivery.attempt <= event.failTimes) {
      const fixed = yield* sql`SELECT 1 FROM toy_fixed WHERE aggregate = ${event.aggregate}`
      if (fixed.length === 0) {
        return yield* Effect.fail(new Error(`toy handler fails ${event.aggregate}#${event.n} (attempt ${delivery.attempt})`))
      }
    }
    if (event.delayMs !== undefined) yield* Effect.sleep(event.delayMs)
    const traceId = Option.match(yield* Effect.option(Effect.currentSpan), { onNone: () => null, onSome: (span) => span.traceId })
    yield* sql`INSERT INTO toy_applied (message_id, aggregate, n, attempt, trace_id)
      VALUES (${delivery.messageId}, ${event.aggregate}, ${event.n}, ${delivery.attempt}, ${traceId})`
  }))

export const ToySubModule = Module.make({
  client: SubClient,
  handlers: subHandlers,
  subscribes: [onToyHappened]
})

// What the messaging suites share.

/** A name no other test run uses. */
export const unique = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`

/** `effect`'s first value that is not undefined, polled every 20 ms; dies naming `what` after `timeoutMs`. */
export const waitFor = <A, R>(effect: Effect.Effect<A | undefined, unknown, R>, what: string, timeoutMs = 20_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const value = yield* effect
      if (value !== undefined) return value
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`timed out waiting for ${what}`)
  })

/** The toy events the subscriber applied for `aggregate`, in the order applied. */
export const appliedOf = (aggregate: string) =>
  Effect.map(Effect.flatMap(SubClient, (c) => c.applied()), (rows) => rows.filter((r) => r.aggregate === aggregate))

/** A toy process (MessagingToyHost.ts, compiled: ToyHosts.ts) hosting `modules` (`toypub`, `toysub`, or both) with `env`. */
export const spawnHost = async (modules: string, env: Readonly<Record<string, string>>) => {
  const port = await Processes.freePort()
  return Processes.spawnProgram(
    process.execPath,
    [...Processes.nodeFlags(), ToyHosts.entry("messaging"), "serve"],
    { ...env, TESSERA_MODULES: modules, PORT: String(port) },
    { cwd: root, port }
  )
}

/** Runs `f` with a client of the PostgreSQL database at `url` (as its admin: every module's schema). */
export const withDatabase = <A>(url: string, f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(PgClient.make({ url: Redacted.make(url), maxConnections: 2 }), f)).pipe(Effect.provide(Reactivity.layer))
  )
