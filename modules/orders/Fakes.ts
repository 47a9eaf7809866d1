/**
 * For orders' tests: the modules orders calls, stubbed by small in-memory fakes that honour their
 * contracts (catalog's products and prices; inventory's all-or-nothing, idempotent reservations;
 * a charge once per paymentId; a shipment once per order, on hold until released) and record
 * who called them. Tokens decide a charge, as the provider's test tokens do: `tok_ok` is charged,
 * `tok_decline` declined, `tok_unavailable` answers PaymentUnavailable; a refund of a payment in
 * `unrefundable` answers PaymentUnavailable. `breakShippingFor` makes
 * shipping answer a customer's shipments with what no saga expects (Forbidden).
 */
import { RpcClient } from "@effect/rpc"
import { DateTime, Effect, FiberRef, Option } from "effect"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import * as Caller from "../../runtime/security/Caller.ts"
import { CatalogClient, type Currency, Product, ProductId, ProductNotFound, type Sku } from "../catalog/index.ts"
import {
  IdempotencyKeyReused,
  InventoryClient,
  Reservation,
  ReservationConflict,
  type ReservationLine,
  ReservationNotFound,
  Stock,
  StockInsufficient
} from "../inventory/index.ts"
import { Payment, PaymentDeclined, PaymentNotFound, PaymentsClient, PaymentUnavailable } from "../payments/index.ts"
import { Shipment, ShipmentAlreadyShipped, ShipmentCancelled, ShipmentNotFound, ShippingClient } from "../shipping/index.ts"

export interface Call {
  readonly rpc: string
  readonly caller: Option.Option<Caller.Caller>
  readonly payload: unknown
}

export const make = () => {
  const products = new Map<string, Product>()
  const stock = new Map<string, { available: number; reserved: number }>()
  const reservations = new Map<string, { status: Reservation["status"]; lines: ReadonlyArray<ReservationLine> }>()
  const restockKeys = new Map<string, string>()
  const payments = new Map<string, Payment>()
  const shipments = new Map<string, Shipment>()
  /** Payments whose refunds fail (PaymentUnavailable) while listed here. */
  const unrefundable = new Set<string>()
  /** Customers whose shipments shipping refuses to create, as it never should (Forbidden). */
  const brokenShipping = new Set<string>()
  const calls: Array<Call> = []

  const record = (rpc: string, payload: unknown) =>
    Effect.map(FiberRef.get(RpcClient.currentHeaders), (headers) => {
      calls.push({ rpc, caller: Caller.fromHeaders(headers), payload })
    })

  const payment = (p: Payment, status: Payment["status"]) =>
    new Payment({ ...p, status, updatedAt: DateTime.unsafeNow() })

  /** A catalog product priced `priceCents`, with `units` in stock. */
  const product = (units: number, priceCents = 250, currency = "EUR") => {
    const id = ProductId.make(crypto.randomUUID())
    products.set(
      id,
      new Product({
        id,
        sku: `SKU-${id.slice(0, 8)}` as Sku,
        name: "Lamp",
        description: "",
        priceCents,
        currency: currency as Currency,
        createdAt: DateTime.unsafeNow()
      })
    )
    stock.set(id, { available: units, reserved: 0 })
    return id
  }

  const catalogStub = TestHost.stub(CatalogClient, {
    get: ({ id }) => {
      const found = products.get(id)
      return found ? Effect.succeed(found) : Effect.fail(new ProductNotFound({ productId: id }))
    }
  })

  const levels = (productId: string) => stock.get(productId)!
  const reservation = (reservationId: string) => {
    const r = reservations.get(reservationId)!
    return new Reservation({ reservationId: reservationId as Reservation["reservationId"], status: r.status, lines: r.lines })
  }

  const inventoryStub = TestHost.stub(InventoryClient, {
    get: ({ productId }) => Effect.succeed(new Stock({ productId, ...levels(productId) })),
    restock: (input: { productId: string; quantity: number }, options?: { headers?: Record<string, string> }) =>
      Effect.zipRight(
        record("inventory.restock", input),
        Effect.suspend(() => {
          const key = options?.headers?.["idempotency-key"]
          const stored = key === undefined ? undefined : restockKeys.get(key)
          if (stored !== undefined && stored !== `${input.productId}/${input.quantity}`) {
            return Effect.fail(new IdempotencyKeyReused({ key: key! }))
          }
          if (stored === undefined) {
            levels(input.productId).available += input.quantity
            if (key !== undefined) restockKeys.set(key, `${input.productId}/${input.quantity}`)
          }
          return Effect.succeed(new Stock({ productId: input.productId as ProductId, ...levels(input.productId) }))
        })
      ),
    reserve: (input) =>
      Effect.zipRight(
        record("inventory.reserve", input),
        Effect.suspend((): Effect.Effect<Reservation, StockInsufficient | ReservationConflict> => {
          const prior = reservations.get(input.reservationId)
          if (prior) {
            return prior.status === "released"
              ? Effect.fail(new ReservationConflict({ reservationId: input.reservationId, status: "released", reason: "released" }))
              : Effect.succeed(reservation(input.reservationId))
          }
          const short = input.lines.find((line: ReservationLine) => levels(line.productId).available < line.quantity)
          if (short) {
            return Effect.fail(
              new StockInsufficient({ productId: short.productId, requested: short.quantity, available: levels(short.productId).available })
            )
          }
          for (const line of input.lines as ReadonlyArray<ReservationLine>) {
            levels(line.productId).available -= line.quantity
            levels(line.productId).reserved += line.quantity
          }
          reservations.set(input.reservationId, { status: "held", lines: input.lines })
          return Effect.succeed(reservation(input.reservationId))
        })
      ),
    release: (input) =>
      Effect.zipRight(
        record("inventory.release", input),
        Effect.suspend((): Effect.Effect<Reservation, ReservationConflict> => {
          const prior = reservations.get(input.reservationId)
          if (!prior) reservations.set(input.reservationId, { status: "released", lines: [] })
          else if (prior.status === "committed") {
            return Effect.fail(new ReservationConflict({ reservationId: input.reservationId, status: "committed", reason: "sold" }))
          } else if (prior.status === "held") {
            for (const line of prior.lines) {
              levels(line.productId).available += line.quantity
              levels(line.productId).reserved -= line.quantity
            }
            prior.status = "released"
          }
          return Effect.succeed(reservation(input.reservationId))
        })
      ),
    commit: (input) =>
      Effect.zipRight(
        record("inventory.commit", input),
        Effect.suspend((): Effect.Effect<Reservation, ReservationNotFound | ReservationConflict> => {
          const prior = reservations.get(input.reservationId)
          if (!prior) return Effect.fail(new ReservationNotFound({ reservationId: input.reservationId }))
          if (prior.status === "released") {
            return Effect.fail(new ReservationConflict({ reservationId: input.reservationId, status: "released", reason: "released" }))
          }
          if (prior.status === "held") {
            for (const line of prior.lines) levels(line.productId).reserved -= line.quantity
            prior.status = "committed"
          }
          return Effect.succeed(reservation(input.reservationId))
        })
      )
  })

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
        Effect.suspend((): Effect.Effect<Payment | undefined, PaymentUnavailable> => {
          if (unrefundable.has(input.paymentId)) {
            return Effect.fail(new PaymentUnavailable({ paymentId: input.paymentId, reason: "the provider refuses refunds for now" }))
          }
          const prior = payments.get(input.paymentId)
          if (!prior || prior.status !== "charged") return Effect.succeed(prior)
          const refunded = payment(prior, "refunded")
          payments.set(input.paymentId, refunded)
          return Effect.succeed(refunded)
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
        Effect.suspend((): Effect.Effect<Shipment, Caller.Forbidden> => {
          if (brokenShipping.has(input.customerId)) return Effect.fail(new Caller.Forbidden({ reason: "shipping is broken for this customer" }))
          const prior = shipments.get(input.orderId)
          if (prior) return Effect.succeed(prior)
          const now = DateTime.unsafeNow()
          const made = new Shipment({
            orderId: input.orderId,
            customerId: input.customerId,
            trackingNumber: `TRK-${input.orderId.slice(0, 8)}`,
            status: "on_hold",
            createdAt: now,
            updatedAt: now
          })
          shipments.set(input.orderId, made)
          return Effect.succeed(made)
        })
      ),
    release: (input) =>
      Effect.zipRight(
        record("shipping.release", input),
        Effect.suspend((): Effect.Effect<Shipment, ShipmentNotFound | ShipmentCancelled> => {
          const prior = shipments.get(input.orderId)
          if (!prior) return Effect.fail(new ShipmentNotFound({ orderId: input.orderId }))
          if (prior.status === "cancelled") return Effect.fail(new ShipmentCancelled({ orderId: input.orderId }))
          if (prior.status !== "on_hold") return Effect.succeed(prior)
          const ready = new Shipment({ ...prior, status: "ready", updatedAt: DateTime.unsafeNow() })
          shipments.set(input.orderId, ready)
          return Effect.succeed(ready)
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

  /** Marks an order's released shipment as shipped (as a carrier would); one not ready cannot ship. */
  const ship = (orderId: string) => {
    const prior = shipments.get(orderId)!
    if (prior.status !== "ready") throw new Error(`the shipment of order ${orderId} is ${prior.status}, not ready`)
    shipments.set(orderId, new Shipment({ ...prior, status: "shipped" }))
  }

  /** Shipping answers `customerId`'s shipments with Forbidden from now on: a defect for the saga. */
  const breakShippingFor = (customerId: string) => brokenShipping.add(customerId)

  /** A product's units: available and reserved. */
  const levelsOf = (productId: string) => ({ ...levels(productId) })

  return { product, levelsOf, payments, shipments, calls, stubs: [catalogStub, inventoryStub, paymentsStub, shippingStub], ship, breakShippingFor, unrefundable }
}
