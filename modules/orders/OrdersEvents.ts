/**
 * The events orders publishes, each in the transaction that changes the order. A publisher may
 * add optional fields to an event; any other change is a new event under a new name
 * (runtime/messaging/Event.ts).
 */
import { Schema } from "effect"
import { Currency } from "../catalog/index.ts"
import * as Event from "../../runtime/messaging/Event.ts"
import { FailureReason, OrderId } from "./OrdersApi.ts"

/** An order was confirmed: paid, its stock sold, its shipment released (published once per order). */
export const OrderConfirmed = Event.make({
  publisher: "orders",
  name: "OrderConfirmed",
  payload: Schema.Struct({
    orderId: OrderId,
    customerId: Schema.String,
    totalCents: Schema.Int,
    currency: Currency
  }),
  aggregate: (event) => event.orderId
})

/**
 * An order ended CANCELLED, with why: by its saga (out of stock, payment declined...) or by its
 * customer, before or after it was confirmed (published once per order).
 */
export const OrderCancelled = Event.make({
  publisher: "orders",
  name: "OrderCancelled",
  payload: Schema.Struct({
    orderId: OrderId,
    customerId: Schema.String,
    reason: FailureReason
  }),
  aggregate: (event) => event.orderId
})
