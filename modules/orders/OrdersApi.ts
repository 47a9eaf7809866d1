/**
 * The orders contract: a customer's order of catalog products, placed once per idempotency key,
 * carried to CONFIRMED or CANCELLED by the order saga (reserve stock, charge, ship, confirm).
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { Currency, ProductId } from "../catalog/index.ts"
import { IdempotencyKey, IdempotencyKeyReused, MAX_UNITS, Quantity } from "../inventory/index.ts"
import { Payment, PaymentNotFound, PaymentToken } from "../payments/index.ts"
import { Shipment, ShipmentNotFound, ShippingAddress } from "../shipping/index.ts"
import { ModuleClient } from "../../runtime/Module.ts"
import * as Saga from "../../runtime/saga/Saga.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

export { IdempotencyKey, IdempotencyKeyReused }

/** An order's id: a UUID. */
export const OrderId = Text.uuid.pipe(Schema.brand("OrderId"))
export type OrderId = typeof OrderId.Type

/** PENDING while the saga runs; it ends CONFIRMED (paid, its shipment released) or CANCELLED (with a reason). */
export const OrderStatus = Schema.Literal("PENDING", "CONFIRMED", "CANCELLED")
export type OrderStatus = typeof OrderStatus.Type

/**
 * Why an order ended CANCELLED. `ORDER_FAILED`: its saga met an error it does not expect (a
 * module answering what it should not, a fault); what it had done was undone (stock released,
 * payment refunded, shipment cancelled) and an admin sees the error in the saga's record.
 */
export const FailureReason = Schema.Literal(
  "OUT_OF_STOCK",
  "PAYMENT_DECLINED",
  "PAYMENT_UNAVAILABLE",
  "CANCELLED_BY_CUSTOMER",
  "ORDER_FAILED"
)
export type FailureReason = typeof FailureReason.Type

/** What a customer orders: a product and a number of units. Prices come from the catalog. */
export const OrderItemInput = Schema.Struct({ productId: ProductId, quantity: Quantity }).annotations({
  message: () => "expected an object with productId and quantity"
})
export type OrderItemInput = typeof OrderItemInput.Type

/** A line of an order, priced from the catalog when the order was placed. */
export const OrderItem = Schema.Struct({
  productId: ProductId,
  quantity: Schema.Int,
  unitPriceCents: Schema.Int
})
export type OrderItem = typeof OrderItem.Type

const ITEMS = "expected a list of 1 to 100 objects with productId and quantity"

/**
 * The items of a new order: 1 to 100 lines. The list's shape is checked first, as a whole, so
 * that a huge or deep value is refused at `items` before any element is looked into.
 */
export const OrderItems = Schema.compose(
  Schema.Array(Schema.Unknown).annotations({ message: () => ITEMS }).pipe(
    Schema.filter(
      (list) =>
        list.length >= 1 && list.length <= 100 &&
        list.every((item) => typeof item === "object" && item !== null && !Array.isArray(item)),
      { message: () => ITEMS }
    )
  ),
  Schema.NonEmptyArray(OrderItemInput),
  { strict: false }
).annotations({
  jsonSchema: {
    type: "array",
    minItems: 1,
    maxItems: 100,
    items: {
      type: "object",
      required: ["productId", "quantity"],
      properties: {
        productId: { type: "string", format: "uuid" },
        quantity: { type: "integer", minimum: 1, maximum: MAX_UNITS }
      }
    }
  }
})

/** What a customer sends to place an order. */
export const NewOrder = Schema.Struct({
  items: OrderItems,
  shippingAddress: ShippingAddress,
  paymentToken: PaymentToken
})
export type NewOrder = typeof NewOrder.Type

/** An order, as its owner and admins see it. */
export class Order extends Schema.Class<Order>("orders/Order")({
  id: OrderId,
  customerId: Schema.String,
  status: OrderStatus,
  items: Schema.Array(OrderItem),
  totalCents: Schema.Int,
  currency: Currency,
  failureReason: Schema.optionalWith(FailureReason, { exact: true }),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

/** A listing: the caller's orders (an admin's: everyone's), newest first; keyset paging by `cursor`. */
export const OrderQuery = Schema.Struct({
  status: Schema.optionalWith(Text.oneOf(OrderStatus), { exact: true }),
  limit: Schema.optionalWith(Integer.between(1, 100), { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 200 }), { exact: true })
})
export type OrderQuery = typeof OrderQuery.Type

/** One page of orders, newest first; `nextCursor` is null on the last page. */
export class OrderPage extends Schema.Class<OrderPage>("orders/OrderPage")({
  items: Schema.Array(Order),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

/** A query of the order sagas (admin): by state, newest first, keyset paging by `cursor`. */
export const SagaQuery = Saga.SagaQuery
export type SagaQuery = typeof SagaQuery.Type

export { SagaCursorInvalid, SagaPage, SagaStep, SagaView } from "../../runtime/saga/Saga.ts"

/** No order with this id is visible to the caller (it does not exist, or it is someone else's). */
export class OrderNotFound extends Schema.TaggedError<OrderNotFound>()(
  "OrderNotFound",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no order has id ${this.orderId}`
  }
}

/**
 * An item of a new order cannot be ordered: `field` names it (`items.1.productId`), `reason`
 * says why (an unknown product, a currency other than the other items', a product on an earlier line).
 */
export class OrderItemRefused extends Schema.TaggedError<OrderItemRefused>()(
  "OrderItemRefused",
  { field: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return `${this.field}: ${this.reason}`
  }
}

/** The order has shipped (or is being cancelled for another reason): it can no longer be cancelled. */
export class OrderNotCancellable extends Schema.TaggedError<OrderNotCancellable>()(
  "OrderNotCancellable",
  { orderId: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `order ${this.orderId} cannot be cancelled: ${this.reason}`
  }
}

/** The paging cursor was not one this API handed out. */
export class OrderCursorInvalid extends Schema.TaggedError<OrderCursorInvalid>()(
  "OrderCursorInvalid",
  { cursor: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return "the cursor is not one this API returned"
  }
}

const Authz = [Unauthenticated, Forbidden] as const

export class OrdersRpcs extends RpcGroup.make(
  /**
   * Places an order for the calling customer and starts its saga; answers at once with the order
   * PENDING. Once per (customer, idempotencyKey): the same key with the same order answers the
   * same order; with another, IdempotencyKeyReused. A module calling on its own account is
   * Forbidden (it is no customer).
   */
  Rpc.make("place", {
    payload: { ...NewOrder.fields, idempotencyKey: IdempotencyKey },
    success: Order,
    error: Schema.Union(OrderItemRefused, IdempotencyKeyReused, ...Authz)
  }).annotate(Idempotent, true),
  /** Reads an order: its owner's, or any for an admin (anyone else: OrderNotFound). */
  Rpc.make("get", { payload: { id: OrderId }, success: Order, error: Schema.Union(OrderNotFound, ...Authz) })
    .annotate(Idempotent, true),
  /** Lists the caller's orders, newest first (an admin's: everyone's, optionally by status). */
  Rpc.make("list", { payload: OrderQuery, success: OrderPage, error: Schema.Union(OrderCursorInvalid, ...Authz) })
    .annotate(Idempotent, true),
  /**
   * Asks to cancel an order that has not shipped: its saga refunds the payment, returns the stock
   * and cancels the shipment, and the order ends CANCELLED with CANCELLED_BY_CUSTOMER. Answers
   * the order as it stands (PENDING or CONFIRMED until the saga is done). Idempotent.
   */
  Rpc.make("cancel", {
    payload: { id: OrderId },
    success: Order,
    error: Schema.Union(OrderNotFound, OrderNotCancellable, ...Authz)
  }).annotate(Idempotent, true),
  /** The payments module's view of the order's payment (owner or admin). */
  Rpc.make("payment", { payload: { id: OrderId }, success: Payment, error: Schema.Union(OrderNotFound, PaymentNotFound, ...Authz) })
    .annotate(Idempotent, true),
  /** The shipping module's view of the order's shipment (owner or admin). */
  Rpc.make("shipment", {
    payload: { id: OrderId },
    success: Shipment,
    error: Schema.Union(OrderNotFound, ShipmentNotFound, ...Authz)
  }).annotate(Idempotent, true),
  /** The order sagas (PlaceOrder and CancelOrder) with their step history, newest first, optionally by state (admin). */
  Rpc.make("listSagas", { payload: SagaQuery, success: Saga.SagaPage, error: Schema.Union(Saga.SagaCursorInvalid, ...Authz) })
    .annotate(Idempotent, true)
) {}

/** Calls orders, wherever it runs. */
export class OrdersClient extends ModuleClient("orders", OrdersRpcs)<OrdersClient>() {}
