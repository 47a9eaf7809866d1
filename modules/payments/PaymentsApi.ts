/**
 * PLACEHOLDER (h/orders): the payments contract as the brief's seam names it, so that orders
 * builds before h/payments is merged. Replaced by h/payments' file on merge.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { Currency } from "../catalog/index.ts"
import { ModuleClient } from "../../runtime/Module.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

export const PaymentId = Schema.String.pipe(Schema.brand("PaymentId"))
export type PaymentId = typeof PaymentId.Type

export class Payment extends Schema.Class<Payment>("payments/Payment")({
  paymentId: PaymentId,
  orderId: Schema.String,
  customerId: Schema.String,
  status: Schema.Literal("charged", "declined", "refunded"),
  amountCents: Schema.Int,
  currency: Currency,
  providerChargeId: Schema.optional(Schema.String),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

export class PaymentDeclined extends Schema.TaggedError<PaymentDeclined>()(
  "PaymentDeclined",
  { paymentId: Schema.String },
  HttpApiSchema.annotations({ status: 402 })
) {}

export class PaymentUnavailable extends Schema.TaggedError<PaymentUnavailable>()(
  "PaymentUnavailable",
  { paymentId: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

export class PaymentNotFound extends Schema.TaggedError<PaymentNotFound>()(
  "PaymentNotFound",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class PaymentsRpcs extends RpcGroup.make(
  Rpc.make("charge", {
    payload: {
      paymentId: PaymentId,
      orderId: Schema.String,
      customerId: Schema.String,
      amountCents: Schema.Int,
      currency: Currency,
      token: Schema.String
    },
    success: Payment,
    error: Schema.Union(PaymentDeclined, PaymentUnavailable, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  Rpc.make("refund", {
    payload: { paymentId: PaymentId },
    success: Payment,
    error: Schema.Union(Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  Rpc.make("byOrder", {
    payload: { orderId: Schema.String },
    success: Payment,
    error: Schema.Union(PaymentNotFound, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true)
) {}

export class PaymentsClient extends ModuleClient("payments", PaymentsRpcs)<PaymentsClient>() {}
