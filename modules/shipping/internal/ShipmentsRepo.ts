/** SQL over the shipping schema's shipments table. Database failures become defects here. */
import { SqlClient, SqlError } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { Shipment, ShipmentStatus, type ShippingAddress } from "../ShippingApi.ts"

const columns = `order_id AS "orderId", customer_id AS "customerId", tracking_number AS "trackingNumber", status,
  created_at AS "createdAt", updated_at AS "updatedAt"`

/** A row: a shipment, or a cancellation that came first (no customer, no tracking number). */
const Row = Schema.Struct({
  orderId: Schema.String,
  customerId: Schema.NullOr(Schema.String),
  trackingNumber: Schema.NullOr(Schema.String),
  status: ShipmentStatus,
  createdAt: Schema.DateTimeUtcFromDate,
  updatedAt: Schema.DateTimeUtcFromDate
})
const decodeRows = Schema.decodeUnknown(Schema.Array(Row))

/** The row as a shipment; `None` for a cancellation that came before any shipment. */
const shipmentOf = (row: typeof Row.Type): Option.Option<Shipment> =>
  row.customerId === null || row.trackingNumber === null
    ? Option.none()
    : Option.some(new Shipment({ ...row, customerId: row.customerId, trackingNumber: row.trackingNumber }, { disableValidation: true }))

/** What a statement answered: no row, or the row (a shipment or not). */
export type Found = Option.Option<{ readonly status: ShipmentStatus; readonly shipment: Option.Option<Shipment> }>

const found = (rows: ReadonlyArray<typeof Row.Type>): Found =>
  Option.map(Option.fromNullable(rows[0]), (row) => ({ status: row.status, shipment: shipmentOf(row) }))

/** The unique constraint on tracking numbers (PostgreSQL's default name). */
export const TRACKING_NUMBER_KEY = "shipments_tracking_number_key"

export class ShipmentsRepo extends Effect.Service<ShipmentsRepo>()("shipping/ShipmentsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = <E, R>(statement: Effect.Effect<ReadonlyArray<unknown>, E, R>) =>
      Effect.flatMap(statement, decodeRows).pipe(Effect.map(found))

    return {
      /**
       * Inserts the order's shipment, or fills in a cancellation that came first (it stays
       * cancelled); `None` when the order already has a shipment. Fails with the SqlError of a
       * repeated tracking number, for the caller to draw another.
       */
      insert: (orderId: string, customerId: string, address: ShippingAddress, trackingNumber: string) =>
        rows(sql`INSERT INTO shipments AS s (order_id, customer_id, tracking_number, status, name, line1, city, postal_code, country)
            VALUES (${orderId}, ${customerId}, ${trackingNumber}, 'on_hold', ${address.name}, ${address.line1},
                    ${address.city}, ${address.postalCode}, ${address.country})
            ON CONFLICT (order_id) DO UPDATE
              SET customer_id = EXCLUDED.customer_id, tracking_number = EXCLUDED.tracking_number,
                  name = EXCLUDED.name, line1 = EXCLUDED.line1, city = EXCLUDED.city,
                  postal_code = EXCLUDED.postal_code, country = EXCLUDED.country, updated_at = now()
              WHERE s.customer_id IS NULL
            RETURNING ${sql.literal(columns)}`).pipe(
          Effect.catchIf(
            (error) => !(error instanceof SqlError.SqlError && PgError.isUniqueViolation(error, TRACKING_NUMBER_KEY)),
            PgError.die
          )
        ),

      find: (orderId: string) => rows(sql`SELECT ${sql.literal(columns)} FROM shipments WHERE order_id = ${orderId}`).pipe(PgError.orDie),

      /**
       * Cancels a shipment on hold or ready, or records the cancellation of an order with none;
       * `None` when the shipment was shipped or cancelled already.
       */
      cancel: (orderId: string) =>
        rows(sql`INSERT INTO shipments AS s (order_id, status) VALUES (${orderId}, 'cancelled')
            ON CONFLICT (order_id) DO UPDATE SET status = 'cancelled', updated_at = now()
              WHERE s.status IN ('on_hold', 'ready')
            RETURNING ${sql.literal(columns)}`).pipe(PgError.orDie),

      /** Releases a shipment on hold (it becomes ready); `None` when there is none on hold. */
      release: (orderId: string) =>
        rows(sql`UPDATE shipments SET status = 'ready', updated_at = now()
            WHERE order_id = ${orderId} AND status = 'on_hold' AND customer_id IS NOT NULL
            RETURNING ${sql.literal(columns)}`).pipe(PgError.orDie),

      /** Marks a ready shipment shipped; `None` when there is none ready. */
      ship: (orderId: string) =>
        rows(sql`UPDATE shipments SET status = 'shipped', updated_at = now()
            WHERE order_id = ${orderId} AND status = 'ready' AND customer_id IS NOT NULL
            RETURNING ${sql.literal(columns)}`).pipe(PgError.orDie)
    } as const
  })
}) {}
