/**
 * The dead letters of a subscriber module, as an operator reaches them: a runtime-owned RPC
 * group (`DeadLetters.list`, `DeadLetters.replay`) that the runtime adds to the contract of every
 * module that subscribes to events (Host.ts, `contractOf`), served by the module's own process
 * over its own database, and called by the gateway's admin routes (DeadLettersHttp.ts) through
 * the module's client, wherever the module runs.
 *
 * A dead letter is a message that failed its handler `TESSERA_EVENTS_MAX_DELIVERIES` times
 * (InProcessBroker.consume), through either broker: with RabbitMQ the message is first written
 * into the subscriber's `event_deliveries` and fails there the same way. `replay` puts it back
 * into that queue with a fresh count of deliveries, in the transaction that marks it replayed,
 * and wakes the module's consumers: the message then takes the normal path (its inbox record
 * keeps it applied at most once), and one that fails again is dead-lettered again, as a new
 * dead letter with the new error.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, type RpcClient, RpcGroup } from "@effect/rpc"
import type { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import * as PgError from "../db/PgError.ts"
import * as Integer from "../schema/Integer.ts"
import * as Text from "../schema/Text.ts"
import * as Caller from "../security/Caller.ts"
import type { CallError } from "../transport/CallError.ts"
import { channelOf } from "./InProcessBroker.ts"

/** Whether a dead letter still waits (`pending`) or was handed back to its subscriber (`replayed`). */
export const State = Schema.Literal("pending", "replayed")
export type State = typeof State.Type

/** A dead-lettered message, as an operator sees it. */
export class DeadLetter extends Schema.Class<DeadLetter>("messaging/DeadLetter")({
  /** `<subscriber>-<n>`: the dead letter (one message dead-lettered twice is two dead letters). */
  id: Schema.String,
  /** The module whose handler failed it. */
  subscriber: Schema.String,
  publisher: Schema.String,
  event: Schema.String,
  /** The aggregate (an order id, a product id) the event is about. */
  aggregate: Schema.String,
  /** The message's id: the same for every subscriber and every delivery of it. */
  messageId: Schema.String,
  /** The failed deliveries before it was dead-lettered. */
  attempts: Schema.Int,
  /** The error of its last delivery. */
  lastError: Schema.String,
  deadLetteredAt: Schema.DateTimeUtc,
  /** When it was replayed (null: it still waits). */
  replayedAt: Schema.NullOr(Schema.DateTimeUtc),
  /** The payload as its event's Schema encodes it. */
  payload: Schema.Unknown
}) {}

/** A dead letter's number in its module (a bigint, as text). */
const Seq = Text.code(/^[1-9][0-9]{0,17}$/, "expected a positive integer in decimal digits")

/** Where a page of dead letters starts: after this one (newest first: `deadAtMicros`, `subscriber`, `seq`). */
export const After = Schema.Struct({
  deadAtMicros: Text.code(/^[0-9]{1,18}$/, "expected microseconds since 1970, in decimal digits"),
  subscriber: Text.code(/^[a-z][a-z0-9_]{0,62}$/, "expected a module name"),
  seq: Seq
}).annotations({ message: () => "expected an object with deadAtMicros, subscriber and seq" })
export type After = typeof After.Type

/** One module's dead letters after `after`, newest first, with where each sorts (for the gateway's merge). */
export class Listed extends Schema.Class<Listed>("messaging/DeadLettersListed")({
  items: Schema.Array(Schema.Struct({ deadLetter: DeadLetter, position: After }))
}) {}

/** No dead letter has this id (404); the id as given, cut to `Text.MAX_QUOTE` characters. */
export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()(
  "DeadLetterNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no dead letter ${this.id}`
  }
}

/** The dead letter was replayed already (409): a replay that failed again is a new dead letter. */
export class DeadLetterAlreadyReplayed extends Schema.TaggedError<DeadLetterAlreadyReplayed>()(
  "DeadLetterAlreadyReplayed",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `dead letter ${this.id} was replayed already`
  }
}

const Authz = [Caller.Unauthenticated, Caller.Forbidden] as const

/** The calls the runtime adds to every subscriber module's contract (admins only). */
export class DeadLettersRpcs extends RpcGroup.make(
  /** The module's dead letters after `after` (or from the newest), newest first, at most `limit`. */
  Rpc.make("list", {
    payload: Schema.Struct({
      limit: Integer.between(1, 101),
      state: Schema.optionalWith(Text.oneOf(State), { exact: true }),
      after: Schema.optionalWith(After, { exact: true })
    }),
    success: Listed,
    error: Schema.Union(...Authz)
  }),
  /** Hands dead letter `seq` of this module back to its consumer; answers it as replayed. */
  Rpc.make("replay", {
    payload: { seq: Seq },
    success: DeadLetter,
    error: Schema.Union(DeadLetterNotFound, DeadLetterAlreadyReplayed, ...Authz)
  })
).prefix("DeadLetters.") {}

/** The dead-letter calls of a subscriber module's client. */
export type Client = RpcClient.RpcClient<RpcGroup.Rpcs<typeof DeadLettersRpcs>, CallError>

/**
 * The dead-letter calls of `client`, the client of a module that subscribes to events: the
 * runtime serves them beside the module's own (Host.ts, `contractOf`), which its Tag's type does
 * not show.
 */
export const clientOf = (client: object): Client => client as Client

/** The id of `subscriber`'s dead letter `seq`, and back. */
export const idOf = (subscriber: string, seq: string) => `${subscriber}-${seq}`
export const parseId = (id: string): { readonly subscriber: string; readonly seq: string } | undefined => {
  const match = /^([a-z][a-z0-9_]{0,62})-([1-9][0-9]{0,17})$/.exec(id)
  return match === null ? undefined : { subscriber: match[1]!, seq: match[2]! }
}

/** Which comes first, newest first: `a` before `b` is negative. */
export const compare = (a: After, b: After): number => {
  const micros = BigInt(b.deadAtMicros) - BigInt(a.deadAtMicros)
  if (micros !== 0n) return micros < 0n ? -1 : 1
  if (a.subscriber !== b.subscriber) return a.subscriber > b.subscriber ? -1 : 1
  const seq = BigInt(b.seq) - BigInt(a.seq)
  return seq === 0n ? 0 : seq < 0n ? -1 : 1
}

interface Row {
  readonly seq: string
  readonly dead_micros: string
  readonly message_id: string
  readonly publisher: string
  readonly event: string
  readonly aggregate: string
  readonly payload: unknown
  readonly attempts: number
  readonly error: string
  readonly dead_at: Date
  readonly replayed_at: Date | null
}

const utc = Schema.decodeSync(Schema.DateTimeUtcFromDate)

const COLUMNS = `seq::text AS seq, (EXTRACT(EPOCH FROM dead_at) * 1000000)::bigint::text AS dead_micros, message_id::text AS message_id,
  publisher, event, aggregate, payload, attempts, error, dead_at, replayed_at`

const viewOf = (subscriber: string, row: Row) =>
  new DeadLetter({
    id: idOf(subscriber, row.seq),
    subscriber,
    publisher: row.publisher,
    event: row.event,
    aggregate: row.aggregate,
    messageId: row.message_id,
    attempts: row.attempts,
    lastError: row.error,
    deadLetteredAt: utc(row.dead_at),
    replayedAt: row.replayed_at === null ? null : utc(row.replayed_at),
    payload: typeof row.payload === "string" ? JSON.parse(row.payload) : row.payload
  })

/** What the handlers of one subscriber module work with. */
export interface Subscriber {
  readonly module: string
  readonly sql: SqlClient.SqlClient
  /** Wakes its consumer in this process. */
  readonly wake: () => void
  /** Whether its database delivers notifications (PostgreSQL): then a replay also wakes its other instances. */
  readonly notify: boolean
}

/** `subscriber`'s dead letters after `after`, newest first. */
export const list = (
  subscriber: Subscriber,
  query: { readonly limit: number; readonly state?: State | undefined; readonly after?: After | undefined }
) =>
  Effect.gen(function*() {
    const { sql } = subscriber
    const micros = sql.literal("(EXTRACT(EPOCH FROM dead_at) * 1000000)::bigint")
    const after = query.after
    const conditions = [
      ...(query.state === "pending" ? [sql`replayed_at IS NULL`] : []),
      ...(query.state === "replayed" ? [sql`replayed_at IS NOT NULL`] : []),
      ...(after === undefined ? [] : [
        // Newest first, then by subscriber (descending), then by seq (descending): rows of this
        // module sort after the cursor's when older, or as old and behind it by name or seq.
        subscriber.module < after.subscriber
          ? sql`${micros} <= ${after.deadAtMicros}::bigint`
          : subscriber.module > after.subscriber
          ? sql`${micros} < ${after.deadAtMicros}::bigint`
          : sql`(${micros} < ${after.deadAtMicros}::bigint OR (${micros} = ${after.deadAtMicros}::bigint AND seq < ${after.seq}::bigint))`
      ])
    ]
    const rows = yield* sql<Row>`
      SELECT ${sql.literal(COLUMNS)} FROM dead_letters
      ${conditions.length === 0 ? sql`` : sql`WHERE ${sql.and(conditions)}`}
      ORDER BY ${micros} DESC, seq DESC LIMIT ${query.limit}`
    return new Listed({
      items: rows.map((row) => ({
        deadLetter: viewOf(subscriber.module, row),
        position: { deadAtMicros: row.dead_micros, subscriber: subscriber.module, seq: row.seq }
      }))
    })
  }).pipe(PgError.orDie, Effect.withSpan("DeadLetters.list"))

/**
 * Marks dead letter `seq` replayed and puts its message back into the module's queue
 * (`event_deliveries`, no failed delivery yet) in one transaction, then wakes its consumers.
 */
export const replay = (subscriber: Subscriber, seq: string) =>
  Effect.gen(function*() {
    const { sql } = subscriber
    const id = idOf(subscriber.module, seq)
    const replayed = yield* sql.withTransaction(Effect.gen(function*() {
      const [row] = yield* sql<Row>`
        UPDATE dead_letters SET replayed_at = clock_timestamp()
        WHERE seq = ${seq}::bigint AND replayed_at IS NULL
        RETURNING ${sql.literal(COLUMNS)}`
      if (row === undefined) {
        const found = yield* sql`SELECT 1 FROM dead_letters WHERE seq = ${seq}::bigint`
        return yield* found.length === 0 ? new DeadLetterNotFound({ id }) : new DeadLetterAlreadyReplayed({ id })
      }
      // Its place among its aggregate's events: its outbox seq (0 for one dead-lettered before
      // that was kept, which then goes ahead of its aggregate's queued events).
      yield* sql`
        INSERT INTO event_deliveries (message_id, publisher, event, aggregate, seq, payload, published_at)
        SELECT message_id, publisher, event, aggregate, COALESCE(message_seq, 0), payload, published_at
        FROM dead_letters WHERE seq = ${seq}::bigint
        ON CONFLICT (message_id) DO NOTHING`
      if (subscriber.notify) yield* sql`SELECT pg_notify(${channelOf(subscriber.module)}, 'replayed')`
      return row
    }))
    yield* Effect.sync(subscriber.wake)
    yield* Effect.logInfo(`${replayed.publisher}'s ${replayed.event} ${replayed.message_id}: dead letter ${id} replayed`)
    return viewOf(subscriber.module, replayed)
  }).pipe(Effect.catchTag("SqlError", PgError.die), Effect.withSpan("DeadLetters.replay"))

/** The handlers of `subscriber`'s dead-letter calls: admins only. */
export const layer = (subscriber: Subscriber) =>
  DeadLettersRpcs.toLayer({
    "DeadLetters.list": (query, { headers }) => Effect.zipRight(Caller.requireAdmin(headers), list(subscriber, query)),
    "DeadLetters.replay": ({ seq }, { headers }) => Effect.zipRight(Caller.requireAdmin(headers), replay(subscriber, seq))
  })
