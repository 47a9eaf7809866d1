/**
 * The payments contract: charging a customer for an order through the external payment provider,
 * refunding it, and reading the payment of an order. Every call is idempotent by `paymentId`,
 * which the caller chooses (the order saga derives it from the order: `order-<orderId>`): a
 * charge tried again never charges twice.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ModuleClient } from "../../runtime/Module.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"
import { Currency } from "../catalog/index.ts"

/** Names a payment; chosen by the caller, one per intended charge. */
export const PaymentId = Text.code(
  /^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/,
  "a payment id is 1-128 letters, digits, ':', '.', '_' or '-'"
).pipe(Schema.brand("PaymentId"))
export type PaymentId = typeof PaymentId.Type

/** An order's or a customer's id as payments records it (payments does not look into either). */
const Reference = Text.code(/^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/, "an id is 1-128 letters, digits, ':', '.', '_' or '-'")

/** The amount to charge, in the currency's minor unit: a positive integer that fits in 32 bits. */
export const AmountCents = Integer.between(1, 2_147_483_647)

/** A payment token from the customer's payment method (the simulator's: tok_ok, tok_decline, ...). */
export const PaymentToken = Text.code(/^[A-Za-z0-9_]{1,64}$/, "a payment token is 1-64 letters, digits or '_'")

/** `charged` until refunded; `declined` is final. */
export const PaymentStatus = Schema.Literal("charged", "declined", "refunded")
export type PaymentStatus = typeof PaymentStatus.Type

/** A payment whose outcome is known. */
export class Payment extends Schema.Class<Payment>("payments/Payment")({
  paymentId: PaymentId,
  orderId: Schema.String,
  customerId: Schema.String,
  status: PaymentStatus,
  amountCents: Schema.Int,
  currency: Currency,
  /** The provider's id of the charge, when the provider made one. */
  providerChargeId: Schema.optional(Schema.String),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

/** What `charge` takes. */
export const ChargeRequest = Schema.Struct({
  paymentId: PaymentId,
  orderId: Reference,
  customerId: Reference,
  amountCents: AmountCents,
  currency: Currency,
  token: PaymentToken
})
export type ChargeRequest = typeof ChargeRequest.Type

/** The provider declined the charge; nothing was charged, and the same payment stays declined. */
export class PaymentDeclined extends Schema.TaggedError<PaymentDeclined>()(
  "PaymentDeclined",
  { paymentId: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 402 })
) {
  override get message() {
    return `payment ${this.paymentId} was declined: ${this.reason}`
  }
}

/**
 * The provider could not be reached or asked (it is down, or its breaker is open), or the outcome
 * of the charge is not known yet. Nothing more will be charged for this payment than one charge:
 * calling again with the same `paymentId` later resolves it.
 */
export class PaymentUnavailable extends Schema.TaggedError<PaymentUnavailable>()(
  "PaymentUnavailable",
  { paymentId: Schema.String, reason: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return `payment ${this.paymentId} is unavailable: ${this.reason}`
  }
}

/** No payment is known for this order (or payment id), or none whose outcome is known yet. */
export class PaymentNotFound extends Schema.TaggedError<PaymentNotFound>()(
  "PaymentNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no payment for ${this.id}`
  }
}

export class PaymentsRpcs extends RpcGroup.make(
  /**
   * Charges the customer once for `paymentId`: again with the same `paymentId` answers the same
   * payment (charged, declined or refunded) and charges nothing more; the first call's order,
   * customer, amount and currency are the payment's. For the service `orders` or an admin.
   */
  Rpc.make("charge", {
    payload: ChargeRequest,
    success: Payment,
    error: Schema.Union(PaymentDeclined, PaymentUnavailable, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * Refunds a charged payment in full; idempotent. A declined or already refunded payment is
   * answered as it is; one whose charge never reached the provider ends refunded with nothing
   * charged, so that a late charge under its id charges nothing: PaymentUnavailable (try again)
   * while a charge sent for it may still be on its way. For the service `orders` or an admin.
   */
  Rpc.make("refund", {
    payload: { paymentId: PaymentId },
    success: Payment,
    error: Schema.Union(PaymentNotFound, PaymentUnavailable, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * The latest payment of an order whose outcome is known. For the service `orders`, an admin, or
   * the payment's customer (anyone else: PaymentNotFound).
   */
  Rpc.make("byOrder", {
    payload: { orderId: Reference },
    success: Payment,
    error: Schema.Union(PaymentNotFound, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true)
) {}

/** Calls payments, wherever it runs. */
export class PaymentsClient extends ModuleClient("payments", PaymentsRpcs)<PaymentsClient>() {}
