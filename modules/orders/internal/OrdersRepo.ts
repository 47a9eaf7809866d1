/** SQL over the orders schema. Database failures become defects here. */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { Outbox } from "../../../runtime/messaging/Outbox.ts"
import { Currency } from "../../catalog/index.ts"
import { ShippingAddress } from "../../shipping/index.ts"
import { FailureReason, Order, OrderItem, OrderId, OrderStatus } from "../OrdersApi.ts"
import { OrderCancelled, OrderConfirmed } from "../OrdersEvents.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"

const OrderRow = Schema.Struct({
  id: Schema.String,
  customerId: Schema.String,
  requestHash: Schema.String,
  status: OrderStatus,
  failureReason: Schema.NullOr(FailureReason),
  items: Schema.NonEmptyArray(OrderItem),
  totalCents: Schema.Union(Schema.Int, Schema.NumberFromString),
  currency: Currency,
  shippingAddress: ShippingAddress,
  paymentToken: Schema.String,
  cancelRequested: Schema.Boolean,
  createdAt: Schema.DateTimeUtcFromDate,
  updatedAt: Schema.DateTimeUtcFromDate
})
export type OrderRow = typeof OrderRow.Type
const decodeRows = Schema.decodeUnknown(Schema.Array(OrderRow))
const decodePlacedRows = Schema.decodeUnknown(Schema.Array(Schema.Struct({ ...OrderRow.fields, cursorAt: Schema.String })))

const columns = `id, customer_id AS "customerId", request_hash AS "requestHash", status,
  failure_reason AS "failureReason", items, total_cents AS "totalCents", currency,
  shipping_address AS "shippingAddress", payment_token AS "paymentToken",
  cancel_requested AS "cancelRequested", created_at AS "createdAt",
  updated_at AS "updatedAt"`

/** The public view of a row. */
export const toOrder = (row: OrderRow): Order =>
  new Order({
    id: row.id as OrderId,
    customerId: row.customerId,
    status: row.status,
    items: row.items,
    totalCents: row.totalCents,
    currency: row.currency,
    ...(row.failureReason === null ? {} : { failureReason: row.failureReason }),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt
  }, { disableValidation: true })

export interface NewOrderRow {
  readonly id: OrderId
  readonly customerId: string
  readonly idempotencyKey: string
  readonly requestHash: string
  readonly items: ReadonlyArray<OrderItem>
  readonly totalCents: number
  readonly currency: string
  readonly shippingAddress: ShippingAddress
  readonly paymentToken: string
}

/** Where a walk over stale pending orders stands: the last order seen (its creation time as PostgreSQL writes it). */
export interface StalePosition {
  readonly id: string
  readonly at: string
}

export class OrdersRepo extends Effect.Service<OrdersRepo>()("orders/OrdersRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox
    const cols = sql.literal(columns)
    const one = (rows: ReadonlyArray<OrderRow>) => Option.fromNullable(rows[0])

    /** Inserts the order; `false` when the customer already used the key (after its writer commits). */
    const insert = (row: NewOrderRow) =>
      sql`INSERT INTO orders (id, customer_id, idempotency_key, request_hash, status, items, total_cents, currency,
                              shipping_address, payment_token)
          VALUES (${row.id}, ${row.customerId}, ${row.idempotencyKey}, ${row.requestHash}, 'PENDING',
                  ${JSON.stringify(row.items)}::jsonb, ${row.totalCents}, ${row.currency},
                  ${JSON.stringify(row.shippingAddress)}::jsonb, ${row.paymentToken})
          ON CONFLICT (customer_id, idempotency_key) DO NOTHING
          RETURNING id`.pipe(Effect.map((rows) => rows.length === 1), PgError.orDie)

    const byKey = (customerId: string, key: string) =>
      sql`SELECT ${cols} FROM orders WHERE customer_id = ${customerId} AND idempotency_key = ${key}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.map(one),
        PgError.orDie
      )

    const byId = (id: string) =>
      sql`SELECT ${cols} FROM orders WHERE id = ${id}`.pipe(Effect.flatMap(decodeRows), Effect.map(one), PgError.orDie)

    /** Up to `limit` orders before `before` in (createdAt, id) order, newest first, each with its position. */
    const list = (query: {
      readonly customerId?: string | undefined
      readonly status?: OrderStatus | undefined
      readonly before?: Cursor.Position | undefined
      readonly limit: number
    }) =>
      sql`SELECT ${cols}, ${sql.literal(Cursor.atColumn("created_at"))} AS "cursorAt" FROM orders
          WHERE ${
        sql.and([
          ...(query.customerId === undefined ? [] : [sql`customer_id = ${query.customerId}`]),
          ...(query.status === undefined ? [] : [sql`status = ${query.status}`]),
          ...(query.before === undefined ? [] : [
            sql`(created_at, id) < (${query.before[0]}::timestamptz, ${query.before[1]}::uuid)`
          ])
        ])
      }
          ORDER BY created_at DESC, id DESC
          LIMIT ${query.limit}`.pipe(
        Effect.flatMap(decodePlacedRows),
        Effect.map((rows) => rows.map(({ cursorAt, ...row }): Cursor.Placed<OrderRow> => ({ item: row, position: [cursorAt, row.id] }))),
        PgError.orDie
      )

    /** Marks the order to be cancelled by its customer; the row as it then stands. */
    const requestCancel = (id: string) =>
      sql`UPDATE orders SET cancel_requested = true, updated_at = now() WHERE id = ${id} RETURNING ${cols}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.map(one),
        PgError.orDie
      )

    /** Takes back a cancel request (the order shipped meanwhile). */
    const dropCancel = (id: string) =>
      sql`UPDATE orders SET cancel_requested = false, updated_at = now() WHERE id = ${id}`.pipe(Effect.asVoid, PgError.orDie)

    /**
     * Decides to confirm a PENDING order unless its customer asked to cancel it (checked and set
     * in one statement); `true` when it is decided, by this call or an earlier one (a cancel
     * asked for since no longer counts), or the order is CONFIRMED already.
     */
    const decideConfirm = (id: string) =>
      sql<{ confirming: boolean; status: string }>`UPDATE orders SET confirming = true, updated_at = now()
          WHERE id = ${id} AND status = 'PENDING' AND NOT cancel_requested RETURNING confirming, status`.pipe(
        Effect.flatMap((updated) =>
          updated.length === 1
            ? Effect.succeed(updated)
            : sql<{ confirming: boolean; status: string }>`SELECT confirming, status FROM orders WHERE id = ${id}`
        ),
        Effect.map((rows) => rows[0] !== undefined && (rows[0].status === "CONFIRMED" || (rows[0].status === "PENDING" && rows[0].confirming))),
        PgError.orDie
      )

    /**
     * A decided order CONFIRMED, its stock committed, and OrderConfirmed published in the same
     * transaction; nothing (no second event) for an order CONFIRMED already.
     */
    const confirm = (id: string) =>
      sql.withTransaction(Effect.gen(function*() {
        const [row] = yield* sql<{ customerId: string; totalCents: number | string; currency: Currency }>`
          UPDATE orders SET status = 'CONFIRMED', updated_at = now() WHERE id = ${id} AND status = 'PENDING' AND confirming
          RETURNING customer_id AS "customerId", total_cents AS "totalCents", currency`
        if (row === undefined) return
        yield* outbox.publish(OrderConfirmed, {
          orderId: OrderId.make(id),
          customerId: row.customerId,
          totalCents: Number(row.totalCents),
          currency: row.currency
        })
      })).pipe(PgError.orDie)

    /**
     * Ends the order CANCELLED with `reason`, and publishes OrderCancelled in the same
     * transaction, unless it is CANCELLED already (then nothing changes and nothing is published).
     */
    const cancel = (id: string, reason: FailureReason) =>
      sql.withTransaction(Effect.gen(function*() {
        const [row] = yield* sql<{ customerId: string }>`
          UPDATE orders SET status = 'CANCELLED', failure_reason = ${reason}, updated_at = now()
          WHERE id = ${id} AND status <> 'CANCELLED' RETURNING customer_id AS "customerId"`
        if (row === undefined) return
        yield* outbox.publish(OrderCancelled, { orderId: OrderId.make(id), customerId: row.customerId, reason })
      })).pipe(PgError.orDie)

    /**
     * Up to `limit` orders still PENDING placed more than `seconds` ago, oldest first, after the
     * position `after` (the `position` of the last one of the previous batch): sagas that may
     * never have started.
     */
    const stalePending = (seconds: number, limit: number, after?: StalePosition) =>
      sql<{ id: string; at: string }>`SELECT id, created_at::text AS at FROM orders
          WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => ${seconds})
            ${after === undefined ? sql`` : sql`AND (created_at, id) > (${after.at}::timestamptz, ${after.id}::uuid)`}
          ORDER BY created_at, id LIMIT ${limit}`.pipe(PgError.orDie)

    /**
     * Up to `limit` orders whose customer asked to cancel them more than `seconds` ago and that are
     * not cancelled yet, oldest request first, after the position `after`: cancels whose saga may
     * never have started.
     */
    const staleCancels = (seconds: number, limit: number, after?: StalePosition) =>
      sql<{ id: string; at: string }>`SELECT id, updated_at::text AS at FROM orders
          WHERE cancel_requested AND status <> 'CANCELLED' AND updated_at < now() - make_interval(secs => ${seconds})
            ${after === undefined ? sql`` : sql`AND (updated_at, id) > (${after.at}::timestamptz, ${after.id}::uuid)`}
          ORDER BY updated_at, id LIMIT ${limit}`.pipe(PgError.orDie)

    return { insert, byKey, byId, list, requestCancel, dropCancel, decideConfirm, confirm, cancel, stalePending, staleCancels } as const
  })
}) {}
