/**
 * For orders' tests: payments and shipping stubbed by small in-memory fakes that honour their
 * contracts' idempotency (a charge once per paymentId, a shipment once per order) and record who
 * called them. Tokens decide a charge, as the provider's test tokens do: `tok_ok` is charged,
 * `tok_decline` declined, `tok_unavailable` answers PaymentUnavailable.
 */
import { RpcClient } from "@effect/rpc"
import { DateTime, Effect, FiberRef, Option } from "effect"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import * as Caller from "../../runtime/security/Caller.ts"
import { Payment, PaymentDeclined, PaymentNotFound, PaymentsClient, PaymentUnavailable } from "../payments/index.ts"
import { Shipment, ShipmentAlreadyShipped, ShipmentNotFound, ShippingClient } from "../shipping/index.ts"

export interface Call {
  readonly rpc: string
  readonly caller: Option.Option<Caller.Caller>
  readonly payload: unknown
}

export const make = () => {
  const payments = new Map<string, Payment>()
  const shipments = new Map<string, Shipment>()
  const calls: Array<Call> = []

  const record = (rpc: string, payload: unknown) =>
    Effect.map(FiberRef.get(RpcClient.currentHeaders), (headers) => {
      calls.push({ rpc, caller: Caller.fromHeaders(headers), payload })
    })

  const payment = (p: Payment, status: Payment["status"]) =>
    new Payment({ ...p, status, updatedAt: DateTime.unsafeNow() })

  const paymentsStub = TestHost.stub(PaymentsClient, {
    charge: (input) =>
      Effect.zipRight(
        record("payments.charge", input),
        Effect.suspend((): Effect.Effect<Payment, PaymentDeclined | PaymentUnavailable> => {
          const prior = payments.get(input.paymentId)
          if (prior) return prior.status === "declined" ? Effect.fail(new PaymentDeclined({ paymentId: input.paymentId, reason: "card declined" })) : Effect.succeed(prior)
          if (input.token === "tok_unavailable") return Effect.fail(new PaymentUnavailable({ paymentId: input.paymentId, reason: "provider down" }))
          const now = DateTime.unsafeNow()
          const made = new Payment({
            paymentId: input.paymentId,
            orderId: input.orderId,
            customerId: input.customerId,
            status: input.token === "tok_decline" ? "declined" : "charged",
            amountCents: input.amountCents,
            currency: input.currency,
            createdAt: now,
            updatedAt: now
          })
          payments.set(input.paymentId, made)
          return made.status === "declined" ? Effect.fail(new PaymentDeclined({ paymentId: input.paymentId, reason: "card declined" })) : Effect.succeed(made)
        })
      ),
    refund: (input) =>
      Effect.zipRight(
        record("payments.refund", input),
        Effect.sync(() => {
          const prior = payments.get(input.paymentId)
          if (!prior || prior.status !== "charged") return prior
          const refunded = payment(prior, "refunded")
          payments.set(input.paymentId, refunded)
          return refunded
        })
      ),
    byOrder: (input) =>
      Effect.zipRight(
        record("payments.byOrder", input),
        Effect.suspend(() => {
          const found = [...payments.values()].find((p) => p.orderId === input.orderId)
          return found ? Effect.succeed(found) : Effect.fail(new PaymentNotFound({ id: input.orderId }))
        })
      )
  })

  const shippingStub = TestHost.stub(ShippingClient, {
    create: (input) =>
      Effect.zipRight(
        record("shipping.create", input),
        Effect.sync(() => {
          const prior = shipments.get(input.orderId)
          if (prior) return prior
          const now = DateTime.unsafeNow()
          const made = new Shipment({
            orderId: input.orderId,
            customerId: input.customerId,
            trackingNumber: `TRK-${input.orderId.slice(0, 8)}`,
            status: "created",
            createdAt: now,
            updatedAt: now
          })
          shipments.set(input.orderId, made)
          return made
        })
      ),
    cancel: (input) =>
      Effect.zipRight(
        record("shipping.cancel", input),
        Effect.suspend((): Effect.Effect<Shipment, ShipmentNotFound | ShipmentAlreadyShipped> => {
          const prior = shipments.get(input.orderId)
          if (!prior) return Effect.fail(new ShipmentNotFound({ orderId: input.orderId }))
          if (prior.status === "shipped") return Effect.fail(new ShipmentAlreadyShipped({ orderId: input.orderId }))
          const cancelled = new Shipment({ ...prior, status: "cancelled", updatedAt: DateTime.unsafeNow() })
          shipments.set(input.orderId, cancelled)
          return Effect.succeed(cancelled)
        })
      ),
    byOrder: (input) =>
      Effect.zipRight(
        record("shipping.byOrder", input),
        Effect.suspend(() => {
          const found = shipments.get(input.orderId)
          return found ? Effect.succeed(found) : Effect.fail(new ShipmentNotFound({ orderId: input.orderId }))
        })
      )
  })

  /** Marks an order's shipment as shipped (as a carrier would). */
  const ship = (orderId: string) => {
    const prior = shipments.get(orderId)!
    shipments.set(orderId, new Shipment({ ...prior, status: "shipped" }))
  }

  return { payments, shipments, calls, stubs: [paymentsStub, shippingStub], ship }
}
