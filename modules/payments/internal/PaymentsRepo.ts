/** SQL over the payments schema. Database failures become defects here. */
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { Currency } from "../../catalog/index.ts"
import type { PaymentId } from "../PaymentsApi.ts"

/** A payment's row: `pending` until its outcome is known. */
export const PaymentRow = Schema.Struct({
  paymentId: Schema.String,
  orderId: Schema.String,
  customerId: Schema.String,
  status: Schema.Literal("pending", "charged", "declined", "refunded"),
  amountCents: Schema.Int,
  currency: Currency,
  providerKey: Schema.String,
  providerChargeId: Schema.NullOr(Schema.String),
  providerRefundId: Schema.NullOr(Schema.String),
  /** Charge requests that may have reached the provider (0: none ever did). */
  sendsInDoubt: Schema.Int,
  createdAt: Schema.DateTimeUtcFromDate,
  updatedAt: Schema.DateTimeUtcFromDate
})
export type PaymentRow = typeof PaymentRow.Type

const decodeRows = Schema.decodeUnknown(Schema.Array(PaymentRow))

const COLUMNS = `payment_id AS "paymentId", order_id AS "orderId", customer_id AS "customerId", status,
  amount_cents AS "amountCents", currency, provider_key AS "providerKey", provider_charge_id AS "providerChargeId",
  provider_refund_id AS "providerRefundId", sends_in_doubt AS "sendsInDoubt", created_at AS "createdAt", updated_at AS "updatedAt"`

const first = <A>(rows: ReadonlyArray<A>): Option.Option<A> => Option.fromNullable(rows[0])

export class PaymentsRepo extends Effect.Service<PaymentsRepo>()("payments/PaymentsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const one = (rows: Effect.Effect<ReadonlyArray<unknown>, unknown>) =>
      rows.pipe(Effect.flatMap(decodeRows), Effect.map(first), PgError.orDie)

    return {
      find: (paymentId: PaymentId) =>
        one(sql`SELECT ${sql.literal(COLUMNS)} FROM payments WHERE payment_id = ${paymentId}`),

      /**
       * Records a pending payment, unless its id is taken: either way, the payment's row as it is
       * now (after any writer of it commits).
       */
      insertPending: (row: {
        readonly paymentId: PaymentId
        readonly orderId: string
        readonly customerId: string
        readonly amountCents: number
        readonly currency: string
        readonly providerKey: string
      }) =>
        sql`INSERT INTO payments (payment_id, order_id, customer_id, status, amount_cents, currency, provider_key)
            VALUES (${row.paymentId}, ${row.orderId}, ${row.customerId}, 'pending', ${row.amountCents}, ${row.currency}, ${row.providerKey})
            ON CONFLICT (payment_id) DO NOTHING`.pipe(
          Effect.zipRight(one(sql`SELECT ${sql.literal(COLUMNS)} FROM payments WHERE payment_id = ${row.paymentId}`)),
          Effect.map(Option.getOrThrow),
          PgError.orDie
        ),

      /**
       * Records a pending payment's outcome (`charged` or `declined`); a payment resolved meanwhile
       * (by a concurrent call) keeps its outcome. Answers the row as it is now.
       */
      resolve: (paymentId: PaymentId, status: "charged" | "declined" | "refunded", providerChargeId: string | null) =>
        sql`UPDATE payments SET status = ${status}, provider_charge_id = ${providerChargeId}, updated_at = now()
            WHERE payment_id = ${paymentId} AND status = 'pending'`.pipe(
          Effect.zipRight(one(sql`SELECT ${sql.literal(COLUMNS)} FROM payments WHERE payment_id = ${paymentId}`)),
          Effect.map(Option.getOrThrow),
          PgError.orDie
        ),

      /**
       * Marks a pending payment as being sent now (a charge may reach the provider from this
       * moment on, one more send in doubt); `None` when it is no longer pending (resolved, or
       * voided: sent no more).
       */
      sending: (paymentId: PaymentId) =>
        one(sql`UPDATE payments SET updated_at = now(), sends_in_doubt = sends_in_doubt + 1
                WHERE payment_id = ${paymentId} AND status = 'pending'
                RETURNING ${sql.literal(COLUMNS)}`),

      /** A send of `sending` surely never reached the provider: one send in doubt less. */
      notSent: (paymentId: PaymentId) =>
        sql`UPDATE payments SET sends_in_doubt = sends_in_doubt - 1
            WHERE payment_id = ${paymentId} AND sends_in_doubt > 0`.pipe(Effect.asVoid, PgError.orDie),

      /**
       * Voids a pending payment (status `refunded`, no charge id) whose charge surely never
       * reached the provider (no send in doubt), or, after `seconds` with no send, one the
       * provider has no charge for (a send still on its way could land after). Answers the row
       * as it is now (still pending when it was sent more recently).
       */
      voidQuiet: (paymentId: PaymentId, seconds: number) =>
        sql`UPDATE payments SET status = 'refunded', updated_at = now()
            WHERE payment_id = ${paymentId} AND status = 'pending'
              AND (sends_in_doubt = 0 OR updated_at < now() - make_interval(secs => ${seconds}))`.pipe(
          Effect.zipRight(one(sql`SELECT ${sql.literal(COLUMNS)} FROM payments WHERE payment_id = ${paymentId}`)),
          Effect.map(Option.getOrThrow),
          PgError.orDie
        ),

      /** Records the refund of a charged payment. Answers the row as it is now. */
      refunded: (paymentId: PaymentId, providerRefundId: string | null) =>
        sql`UPDATE payments SET status = 'refunded', provider_refund_id = ${providerRefundId}, updated_at = now()
            WHERE payment_id = ${paymentId} AND status = 'charged'`.pipe(
          Effect.zipRight(one(sql`SELECT ${sql.literal(COLUMNS)} FROM payments WHERE payment_id = ${paymentId}`)),
          Effect.map(Option.getOrThrow),
          PgError.orDie
        ),

      /** The latest resolved payment of an order. */
      latestOfOrder: (orderId: string) =>
        one(sql`SELECT ${sql.literal(COLUMNS)} FROM payments WHERE order_id = ${orderId} AND status <> 'pending'
                ORDER BY created_at DESC, payment_id DESC LIMIT 1`)
    } as const
  })
}) {}
