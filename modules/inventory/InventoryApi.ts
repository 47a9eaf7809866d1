/**
 * The inventory contract: stock per product, and reservations that hold stock for an order
 * until they are committed (the stock leaves) or released (it returns).
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ProductId, ProductNotFound } from "../catalog/index.ts"
import { ModuleClient } from "../../runtime/Module.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

/**
 * The most units one product can hold, available and reserved together (the stock columns are
 * 32-bit): a restock that would pass it is refused, so releasing or committing a held
 * reservation never can.
 */
export const MAX_UNITS = 2_147_483_647

const Units = Schema.Int.pipe(Schema.between(0, MAX_UNITS))
/** A number of units to add, reserve or release: a positive integer. */
export const Quantity = Integer.between(1, MAX_UNITS)

/** The stock of one product: units free to reserve, and units held by reservations. */
export class Stock extends Schema.Class<Stock>("inventory/Stock")({
  productId: ProductId,
  available: Units,
  reserved: Units
}) {}

/**
 * Names a reservation; chosen by the caller so that a retried reserve or release is harmless
 * (a saga derives it from its own id).
 */
export const ReservationId = Text.code(
  /^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/,
  "a reservation id is 1-128 letters, digits, ':', '.', '_' or '-'"
).pipe(Schema.brand("ReservationId"))
export type ReservationId = typeof ReservationId.Type

/** Units of one product in a reservation. */
export const ReservationLine = Schema.Struct({ productId: ProductId, quantity: Quantity }).annotations({
  message: () => "expected an object with productId and quantity"
})
export type ReservationLine = typeof ReservationLine.Type

/** `held` until committed (the stock leaves) or released (it returns to available). */
export const ReservationStatus = Schema.Literal("held", "committed", "released")
export type ReservationStatus = typeof ReservationStatus.Type

/** A reservation and its lines, one per product. */
export class Reservation extends Schema.Class<Reservation>("inventory/Reservation")({
  reservationId: ReservationId,
  status: ReservationStatus,
  lines: Schema.Array(ReservationLine)
}) {}

/** Not enough available stock to reserve a line; nothing was reserved. */
export class StockInsufficient extends Schema.TaggedError<StockInsufficient>()(
  "StockInsufficient",
  { productId: ProductId, requested: Schema.Int, available: Schema.Int },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `product ${this.productId} has ${this.available} unit(s) available, ${this.requested} requested`
  }
}

/** Adding the units would take the product, available and reserved together, past MAX_UNITS; nothing was added. */
export class StockLimitExceeded extends Schema.TaggedError<StockLimitExceeded>()(
  "StockLimitExceeded",
  { productId: ProductId, limit: Schema.Int },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `product ${this.productId} cannot hold more than ${this.limit} units`
  }
}

/** The idempotency key was used for a restock of another product or quantity; nothing was added. */
export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()(
  "IdempotencyKeyReused",
  { key: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return "this idempotency key was used for another request"
  }
}

/**
 * An idempotency key (the `idempotency-key` header): 1-200 visible ASCII characters, chosen by
 * the client, one per intended change.
 */
export const IdempotencyKey = Text.code(/^[\x21-\x7e]{1,200}$/, "an idempotency key is 1-200 visible ASCII characters")
  .annotations({ identifier: "IdempotencyKey" })

/** No reservation has this id. */
export class ReservationNotFound extends Schema.TaggedError<ReservationNotFound>()(
  "ReservationNotFound",
  { reservationId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no reservation has id ${this.reservationId}`
  }
}

/**
 * The reservation id is taken by a reservation in another state or with other lines (for
 * example reserve after release, or commit after release).
 */
export class ReservationConflict extends Schema.TaggedError<ReservationConflict>()(
  "ReservationConflict",
  { reservationId: Schema.String, status: ReservationStatus, reason: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `reservation ${this.reservationId} is ${this.status}: ${this.reason}`
  }
}

export class InventoryRpcs extends RpcGroup.make(
  /**
   * Admin: adds units to a product's available stock; the product must exist in the catalog. Not
   * idempotent: a call that carries an idempotency key (header `idempotency-key`) is applied once,
   * and the same key again answers the same stock (so that call may be retried).
   */
  Rpc.make("restock", {
    payload: { productId: ProductId, quantity: Quantity },
    success: Stock,
    error: Schema.Union(ProductNotFound, StockLimitExceeded, IdempotencyKeyReused, Unauthenticated, Forbidden)
  }),
  /** Reads a product's stock (zero for a catalog product never restocked). */
  Rpc.make("get", { payload: { productId: ProductId }, success: Stock, error: ProductNotFound }).annotate(Idempotent, true),
  /**
   * Admin or the orders module: holds stock for every line, or for none. Idempotent: reserving again under the same id with
   * the same lines returns the existing reservation.
   */
  Rpc.make("reserve", {
    payload: {
      reservationId: ReservationId,
      lines: Schema.NonEmptyArray(ReservationLine).annotations({
        message: () => ({ message: "expected a list of 1 to 100 lines", override: false })
      }).pipe(Schema.maxItems(100, { message: () => "at most 100 lines" }))
    },
    success: Reservation,
    error: Schema.Union(StockInsufficient, ReservationConflict, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * Admin or the orders module: returns a held reservation's units to available stock. Idempotent; releasing an unknown id
   * records it as released, so a reserve that arrives late under that id is refused.
   */
  Rpc.make("release", {
    payload: { reservationId: ReservationId },
    success: Reservation,
    error: Schema.Union(ReservationConflict, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /** Admin or the orders module: the held units leave the stock for good (the order shipped). Idempotent. */
  Rpc.make("commit", {
    payload: { reservationId: ReservationId },
    success: Reservation,
    error: Schema.Union(ReservationNotFound, ReservationConflict, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true)
) {}

/** Calls inventory, wherever it runs. */
export class InventoryClient extends ModuleClient("inventory", InventoryRpcs)<InventoryClient>() {}
