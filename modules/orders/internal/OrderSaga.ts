/**
 * The order saga, on the runtime's saga layer (runtime/saga/Saga.ts): each step an Activity (run
 * at least once, so each calls an idempotent rpc under a key derived from the order id) with its
 * compensation, so that a failure undoes in reverse what was done: cancel the shipment, refund,
 * release the stock. The outcome is recorded on the order once every compensation has run: the
 * reason of a typed failure, or ORDER_FAILED for a defect, so that every order ends.
 *
 *   PlaceOrder:  reserve stock → charge → create shipment (on hold) → confirm (commit the stock,
 *                release the shipment, order CONFIRMED)
 *   CancelOrder: wait for PlaceOrder's outcome → cancel shipment → refund → return stock → CANCELLED
 *                (each step retried until it succeeds: `stuck` in the admin view while it fails)
 *
 * Every call runs as the service identity "orders", never as the customer who placed the order.
 */
import { Workflow } from "@effect/workflow"
import { Array as Arr, Cause, Chunk, Effect, Layer, Option, Predicate, Schedule, Schema } from "effect"
import type { ProductId } from "../../catalog/index.ts"
import { InventoryClient, ReservationId } from "../../inventory/index.ts"
import { PaymentId, PaymentsClient } from "../../payments/index.ts"
import { ShippingClient } from "../../shipping/index.ts"
import * as Saga from "../../../runtime/saga/Saga.ts"
import * as Caller from "../../../runtime/security/Caller.ts"
import { CallError } from "../../../runtime/transport/CallError.ts"
import * as Idempotent from "../../../runtime/transport/Idempotent.ts"
import { FailureReason, OrderStatus } from "../OrdersApi.ts"
import { type OrderRow, OrdersRepo } from "./OrdersRepo.ts"

/** The saga's own failure: the order cannot go on, for `reason`. */
export class OrderFailed extends Schema.TaggedError<OrderFailed>()("OrderFailed", { reason: FailureReason }) {}

/** Places an order: one execution per order id, so a retried place never starts two. */
export const PlaceOrder = Workflow.make({
  name: "orders/PlaceOrder",
  payload: { orderId: Schema.String },
  idempotencyKey: ({ orderId }) => orderId,
  error: OrderFailed
})

/** Cancels an order for its customer: one execution per order id. */
export const CancelOrder = Workflow.make({
  name: "orders/CancelOrder",
  payload: { orderId: Schema.String },
  idempotencyKey: ({ orderId }) => orderId,
  success: Schema.Literal("cancelled", "shipped")
})

/** The reservation, payment and return keys of an order: derived, so a repeated step repeats nothing. */
export const reservationIdOf = (orderId: string) => ReservationId.make(`order-${orderId}`)
export const paymentIdOf = (orderId: string) => PaymentId.make(`order-${orderId}`)
const returnKeyOf = (orderId: string, productId: string) => `order-${orderId}-return-${productId}`

/** The service identity the saga's calls carry. */
const asService = Caller.asService("orders")

/** Transport failures of an action are retried here, backing off to 5 s (compensations: by the saga layer, for ever). */
const untilDone = Schedule.exponential("100 millis", 2).pipe(Schedule.union(Schedule.spaced("5 seconds")))
/** A charge whose payments module is unreachable is tried a few times, then the order ends PAYMENT_UNAVAILABLE. */
const chargeAttempts = Schedule.exponential("100 millis", 2).pipe(Schedule.intersect(Schedule.recurs(4)))

const retryCalls = <A, E, R>(effect: Effect.Effect<A, E, R>, schedule: Schedule.Schedule<unknown, unknown>) =>
  Effect.retry(effect, { schedule, while: (e) => e instanceof CallError })

/**
 * What the order records of its failed saga: the reason of an OrderFailed; ORDER_FAILED for any
 * other failure (a defect: an rpc answering what the saga does not expect, a bug), which the saga
 * layer has tried again a few times (Saga.DEFECT_RETRIES) before compensating, so that the order
 * ends, cancelled with its money refunded and its stock released, and the saga's record keeps the
 * defect for an operator; nothing for an interruption (a shutdown: the saga resumes, not ends).
 */
export const outcomeOf = (cause: Cause.Cause<unknown>): Option.Option<FailureReason> =>
  Chunk.findFirst(Cause.failures(cause), (e): e is OrderFailed => Predicate.isTagged(e, "OrderFailed")).pipe(
    Option.map((e) => e.reason),
    Option.orElse(() => Cause.isInterruptedOnly(cause) ? Option.none() : Option.some("ORDER_FAILED" as const))
  )

export const OrderSagaLive = Layer.unwrapEffect(Effect.gen(function*() {
  const repo = yield* OrdersRepo
  const inventory = yield* InventoryClient
  const payments = yield* PaymentsClient
  const shipping = yield* ShippingClient

  const load = (orderId: string) => Effect.map(repo.byId(orderId), Option.getOrThrow)

  const reserve = (order: OrderRow) =>
    retryCalls(
      inventory.reserve({
        reservationId: reservationIdOf(order.id),
        lines: Arr.map(order.items, (item) => ({ productId: item.productId, quantity: item.quantity }))
      }),
      untilDone
    ).pipe(
      Effect.asVoid,
      Effect.catchAll((e) => e._tag === "StockInsufficient" ? Effect.fail(new OrderFailed({ reason: "OUT_OF_STOCK" })) : Effect.die(e))
    )

  const release = (order: OrderRow) => inventory.release({ reservationId: reservationIdOf(order.id) })

  const charge = (order: OrderRow) =>
    Effect.gen(function*() {
      // A customer who cancelled before the charge is not charged at all.
      if ((yield* load(order.id)).cancelRequested) return yield* new OrderFailed({ reason: "CANCELLED_BY_CUSTOMER" })
      yield* retryCalls(
        payments.charge({
          paymentId: paymentIdOf(order.id),
          orderId: order.id,
          customerId: order.customerId,
          amountCents: order.totalCents,
          currency: order.currency,
          token: order.paymentToken
        }),
        chargeAttempts
      ).pipe(
        Effect.catchTags({
          PaymentDeclined: () => Effect.fail(new OrderFailed({ reason: "PAYMENT_DECLINED" })),
          PaymentUnavailable: () => Effect.fail(new OrderFailed({ reason: "PAYMENT_UNAVAILABLE" })),
          CallError: () => Effect.fail(new OrderFailed({ reason: "PAYMENT_UNAVAILABLE" }))
        }),
        Effect.catchIf((e): e is Exclude<typeof e, OrderFailed> => !(e instanceof OrderFailed), Effect.die)
      )
    })

  /** A refund of a payment payments never heard of has nothing to undo. */
  const refund = (order: OrderRow) =>
    payments.refund({ paymentId: paymentIdOf(order.id) }).pipe(Effect.asVoid, Effect.catchTag("PaymentNotFound", () => Effect.void))

  const ship = (order: OrderRow) =>
    retryCalls(
      shipping.create({ orderId: order.id, customerId: order.customerId, address: order.shippingAddress }),
      untilDone
    ).pipe(Effect.asVoid, Effect.orDie)

  /**
   * Lets the order's shipment (on hold since created) ship: after the decision to confirm, so that
   * no shipment leaves for an order that may still be cancelled by its saga.
   */
  const releaseShipment = (order: OrderRow) =>
    retryCalls(shipping.release({ orderId: order.id }), untilDone).pipe(Effect.asVoid, Effect.orDie)

  /**
   * Cancels the shipment; `false` when it has already shipped (nothing to undo any more): only
   * once released, which PlaceOrder does when it confirms, so only for CancelOrder.
   */
  const cancelShipment = (order: OrderRow) =>
    shipping.cancel({ orderId: order.id }).pipe(
      Effect.as(true),
      Effect.catchTags({ ShipmentNotFound: () => Effect.succeed(true), ShipmentAlreadyShipped: () => Effect.succeed(false) })
    )

  const commit = (order: OrderRow) => inventory.commit({ reservationId: reservationIdOf(order.id) })

  /**
   * Unless its customer asked to cancel it: the decision to confirm (checked and recorded in one
   * statement), then the reservation committed (the stock is sold), then the shipment released,
   * then the order CONFIRMED, so that an order seen CONFIRMED has its stock sold and its shipment
   * free to ship. Once decided, a run of this step again (after a crash) only commits, releases
   * and confirms: it never fails with a cancel seen after the decision, whose compensation (a
   * release of sold stock) could not succeed. A cancel asked for
   * after the decision is CancelOrder's to carry out, once the order shows CONFIRMED.
   */
  const confirm = (order: OrderRow) =>
    Effect.gen(function*() {
      if (!(yield* repo.decideConfirm(order.id))) return yield* new OrderFailed({ reason: "CANCELLED_BY_CUSTOMER" })
      yield* retryCalls(commit(order), untilDone).pipe(Effect.orDie)
      yield* releaseShipment(order)
      yield* repo.confirm(order.id)
    })

  /**
   * Puts the order's units back on sale: the reservation is committed (if not yet), then each
   * product restocked once, by all its lines' units (one key per product: two lines of one
   * product are one restock, never a key reused for another quantity).
   */
  const returnStock = (order: OrderRow) =>
    Effect.gen(function*() {
      yield* commit(order)
      const units = new Map<ProductId, number>()
      for (const item of order.items) units.set(item.productId, (units.get(item.productId) ?? 0) + item.quantity)
      for (const [productId, quantity] of units) {
        yield* inventory.restock(
          { productId, quantity },
          { headers: { [Idempotent.HEADER]: returnKeyOf(order.id, productId) } }
        )
      }
    })

  const orderOf = ({ orderId }: { readonly orderId: string }) => orderId

  const placeOrder = Saga.toLayer(PlaceOrder, ({ orderId }) =>
    Effect.gen(function*() {
      // Before any step, so that it runs after every compensation: the outcome on the order.
      yield* Saga.afterCompensations((cause) =>
        Option.match(outcomeOf(cause), {
          onNone: () => Effect.void,
          onSome: (reason) => repo.cancel(orderId, reason)
        })
      )
      // What the steps need of the order never changes once placed: read again on each replay.
      const order = yield* load(orderId)
      yield* Saga.step("reserve-stock", {
        error: OrderFailed,
        action: () => asService(reserve(order)),
        compensate: () => asService(release(order))
      })
      yield* Saga.step("charge", {
        error: OrderFailed,
        action: () => asService(charge(order)),
        // A charge whose answer was lost may have been made: refunded too (a no-op if not).
        compensate: () => asService(refund(order)),
        compensateFailed: true
      })
      yield* Saga.step("create-shipment", {
        action: () => asService(ship(order)),
        compensate: () => asService(cancelShipment(order))
      })
      yield* Saga.step("confirm", { error: OrderFailed, action: () => asService(confirm(order)) })
    }), { subject: orderOf })

  const cancelOrder = Saga.toLayer(CancelOrder, ({ orderId }) =>
    Effect.gen(function*() {
      const outcome = yield* Saga.step("await-outcome", {
        success: OrderStatus,
        // PlaceOrder decides first: it sees the request before charging and before confirming.
        action: () =>
          load(orderId).pipe(
            Effect.filterOrFail((row) => row.status !== "PENDING", () => "pending" as const),
            Effect.retry(Schedule.spaced("200 millis")),
            Effect.map((row) => row.status),
            Effect.orDie
          )
      })
      if (outcome === "CANCELLED") return "cancelled" as const
      const order = yield* load(orderId)
      // Undone forward: each step must happen, so each is retried until it succeeds (the saga
      // shows `stuck`, with the step's last error, while one keeps failing).
      const cancelled = yield* Saga.step("cancel-shipment", {
        success: Schema.Boolean,
        untilSucceeds: true,
        action: () => asService(cancelShipment(order))
      })
      if (!cancelled) {
        yield* Saga.step("keep-order", { action: () => repo.dropCancel(orderId) })
        return "shipped" as const
      }
      yield* Saga.step("refund", { untilSucceeds: true, action: () => asService(refund(order)) })
      yield* Saga.step("return-stock", { untilSucceeds: true, action: () => asService(returnStock(order)) })
      yield* Saga.step("record-outcome", { untilSucceeds: true, action: () => repo.cancel(orderId, "CANCELLED_BY_CUSTOMER") })
      return "cancelled" as const
    }), { subject: orderOf })

  return Layer.mergeAll(placeOrder, cancelOrder)
}))
