/** SQL over the inventory schema. Database failures become defects here. */
import { SqlClient, SqlError } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import type { ProductId } from "../../catalog/index.ts"
import { MAX_UNITS, type ReservationId, ReservationLine, ReservationStatus } from "../InventoryApi.ts"

const Levels = Schema.Struct({ available: Schema.Int, reserved: Schema.Int })
const decodeLevels = Schema.decodeUnknown(Schema.Array(Levels))
const decodeStatus = Schema.decodeUnknown(Schema.Array(Schema.Struct({ status: ReservationStatus })))
const decodeLines = Schema.decodeUnknown(Schema.Array(ReservationLine))
const decodeKeyed = Schema.decodeUnknown(Schema.Array(Schema.Struct({
  productId: Schema.String,
  quantity: Schema.Int,
  available: Schema.NullOr(Schema.Int),
  reserved: Schema.NullOr(Schema.Int)
})))

const first = <A>(rows: ReadonlyArray<A>): Option.Option<A> => Option.fromNullable(rows[0])

export class InventoryRepo extends Effect.Service<InventoryRepo>()("inventory/InventoryRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    return {
      /** Runs `effect` in one transaction; a database failure is a defect. */
      transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        sql.withTransaction(effect).pipe(
          Effect.catchIf((error): error is SqlError.SqlError => error instanceof SqlError.SqlError, PgError.die)
        ),

      levels: (productId: ProductId) =>
        sql`SELECT available, reserved FROM stock WHERE product_id = ${productId}`.pipe(
          Effect.flatMap(decodeLevels),
          Effect.map(first),
          PgError.orDie
        ),

      /**
       * Adds units; `None` when the product's units, available and reserved together, would pass
       * MAX_UNITS (the bound that keeps every later release and commit in range).
       */
      restock: (productId: ProductId, quantity: number) =>
        sql`INSERT INTO stock AS s (product_id, available) VALUES (${productId}, ${quantity})
            ON CONFLICT (product_id) DO UPDATE
              SET available = s.available + EXCLUDED.available, updated_at = now()
              WHERE s.available::bigint + s.reserved + EXCLUDED.available <= ${MAX_UNITS}
            RETURNING available, reserved`.pipe(Effect.flatMap(decodeLevels), Effect.map(first), PgError.orDie),

      /**
       * Claims an idempotency key for a restock; `false` when the key is taken (after any writer
       * of it commits). Keys older than a day are forgotten first.
       */
      claimRestockKey: (key: string, productId: ProductId, quantity: number) =>
        sql`DELETE FROM restock_keys WHERE created_at < now() - interval '1 day'`.pipe(
          Effect.zipRight(
            sql`INSERT INTO restock_keys (idempotency_key, product_id, quantity) VALUES (${key}, ${productId}, ${quantity})
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING idempotency_key`
          ),
          Effect.map((rows) => rows.length === 1),
          PgError.orDie
        ),

      /** Records the stock a keyed restock answered. */
      recordRestockKey: (key: string, levels: { readonly available: number; readonly reserved: number }) =>
        sql`UPDATE restock_keys SET available = ${levels.available}, reserved = ${levels.reserved}
            WHERE idempotency_key = ${key}`.pipe(Effect.asVoid, PgError.orDie),

      /** What a keyed restock was and answered. */
      restockByKey: (key: string) =>
        sql`SELECT product_id AS "productId", quantity, available, reserved FROM restock_keys
            WHERE idempotency_key = ${key}`.pipe(Effect.flatMap(decodeKeyed), Effect.map(first), PgError.orDie),

      /** Moves units from available to reserved: the units then available; `None` when too few are available. */
      hold: (productId: ProductId, quantity: number) =>
        sql<{ available: number }>`UPDATE stock SET available = available - ${quantity}, reserved = reserved + ${quantity}, updated_at = now()
            WHERE product_id = ${productId} AND available >= ${quantity}
            RETURNING available`.pipe(Effect.map((rows) => Option.map(first(rows), (row) => row.available)), PgError.orDie),

      /** Moves held units back to available. */
      unhold: (productId: ProductId, quantity: number) =>
        sql`UPDATE stock SET available = available + ${quantity}, reserved = reserved - ${quantity}, updated_at = now()
            WHERE product_id = ${productId}`.pipe(Effect.asVoid, PgError.orDie),

      /** Held units leave the stock. */
      remove: (productId: ProductId, quantity: number) =>
        sql`UPDATE stock SET reserved = reserved - ${quantity}, updated_at = now()
            WHERE product_id = ${productId}`.pipe(Effect.asVoid, PgError.orDie),

      /** Records a new reservation; `false` when the id is taken (after any writer of it commits). */
      insertReservation: (reservationId: ReservationId, status: ReservationStatus) =>
        sql`INSERT INTO reservations (reservation_id, status) VALUES (${reservationId}, ${status})
            ON CONFLICT (reservation_id) DO NOTHING
            RETURNING reservation_id`.pipe(Effect.map((rows) => rows.length === 1), PgError.orDie),

      insertLines: (reservationId: ReservationId, lines: ReadonlyArray<ReservationLine>) =>
        sql`INSERT INTO reservation_lines ${
          sql.insert(lines.map((line) => ({ reservation_id: reservationId, product_id: line.productId, quantity: line.quantity })))
        }`.pipe(Effect.asVoid, PgError.orDie),

      /** The reservation's status, locking its row until the transaction ends. */
      lockReservation: (reservationId: ReservationId) =>
        sql`SELECT status FROM reservations WHERE reservation_id = ${reservationId} FOR UPDATE`.pipe(
          Effect.flatMap(decodeStatus),
          Effect.map((rows) => Option.map(first(rows), (row) => row.status)),
          PgError.orDie
        ),

      setStatus: (reservationId: ReservationId, status: ReservationStatus) =>
        sql`UPDATE reservations SET status = ${status}, updated_at = now() WHERE reservation_id = ${reservationId}`.pipe(
          Effect.asVoid,
          PgError.orDie
        ),

      lines: (reservationId: ReservationId) =>
        sql`SELECT product_id AS "productId", quantity FROM reservation_lines
            WHERE reservation_id = ${reservationId} ORDER BY product_id`.pipe(Effect.flatMap(decodeLines), PgError.orDie)
    } as const
  })
}) {}
