/** What a customer is told of each event: pure, so that the wording is tested without a database. */
import type { FailureReason } from "../../orders/index.ts"
import type { NotificationKind } from "../NotificationsApi.ts"

export interface Message {
  readonly kind: NotificationKind
  readonly customerId: string
  readonly orderId: string
  readonly subject: string
  readonly body: string
}

/** `cents` of `currency` as a customer reads it: `€12.50`, `¥1,250`; the minor unit is the currency's. */
export const money = (cents: number, currency: string) => {
  const format = new Intl.NumberFormat("en", { style: "currency", currency })
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2
  return format.format(cents / 10 ** digits)
}

const WHY: Record<FailureReason, string> = {
  OUT_OF_STOCK: "some of its items are out of stock",
  PAYMENT_DECLINED: "your payment was declined",
  PAYMENT_UNAVAILABLE: "we could not reach the payment provider",
  CANCELLED_BY_CUSTOMER: "you cancelled it",
  ORDER_FAILED: "something went wrong on our side"
}

export const orderConfirmed = (event: {
  readonly orderId: string
  readonly customerId: string
  readonly totalCents: number
  readonly currency: string
}): Message => ({
  kind: "order_confirmed",
  customerId: event.customerId,
  orderId: event.orderId,
  subject: "Your order is confirmed",
  body: `Your order ${event.orderId} is confirmed and paid (${money(event.totalCents, event.currency)}). ` +
    "We will send it as soon as it is packed."
})

export const orderCancelled = (event: {
  readonly orderId: string
  readonly customerId: string
  readonly reason: FailureReason
}): Message => ({
  kind: "order_cancelled",
  customerId: event.customerId,
  orderId: event.orderId,
  subject: "Your order was cancelled",
  body: `Your order ${event.orderId} was cancelled: ${WHY[event.reason]}. Nothing was kept: any payment is refunded.`
})

export const shipmentCreated = (event: {
  readonly orderId: string
  readonly customerId: string
  readonly trackingNumber: string
}): Message => ({
  kind: "shipment_created",
  customerId: event.customerId,
  orderId: event.orderId,
  subject: "Your tracking number",
  body: `Your order ${event.orderId} will travel under tracking number ${event.trackingNumber}.`
})
