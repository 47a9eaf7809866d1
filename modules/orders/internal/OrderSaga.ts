/**
 * The order saga, on @effect/workflow: each step is an Activity (run at least once, so each
 * calls an idempotent rpc under a key derived from the order id), each action registers its
 * compensation with `Workflow.withCompensation`, so that a failure undoes in reverse what was
 * done: cancel the shipment, refund, release the stock. The outcome is recorded on the order.
 *
 *   PlaceOrder:  reserve stock → charge → create shipment → confirm (commit the stock, order CONFIRMED)
 *   CancelOrder: wait for PlaceOrder's outcome → cancel shipment → refund → return stock → CANCELLED
 *
 * Every call runs as the service identity "orders", never as the customer who placed the order.
 */
import { Activity, Workflow } from "@effect/workflow"
import { Cause, Chunk, Effect, Layer, Option, Predicate, Schedule, Schema } from "effect"
import { InventoryClient, ReservationId } from "../../inventory/index.ts"
import { PaymentId, PaymentsClient } from "../../payments/index.ts"
import { ShippingClient } from "../../shipping/index.ts"
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

/** Transport failures are retried; a step that must finish retries them for ever, backing off to 5 s. */
const untilDone = Schedule.exponential("100 millis", 2).pipe(Schedule.union(Schedule.spaced("5 seconds")))
/** A charge whose payments module is unreachable is tried a few times, then the order ends PAYMENT_UNAVAILABLE. */
const chargeAttempts = Schedule.exponential("100 millis", 2).pipe(Schedule.intersect(Schedule.recurs(4)))

const retryCalls = <A, E, R>(effect: Effect.Effect<A, E, R>, schedule: Schedule.Schedule<unknown, unknown>) =>
  Effect.retry(effect, { schedule, while: (e) => e instanceof CallError })

/** What an unexpected error of a step says in the saga's history. */
const describe = (cause: Cause.Cause<unknown>) => {
  const failure = Cause.failureOption(cause)
  const error = Option.isSome(failure) ? failure.value : Cause.squash(cause)
  return Predicate_tag(error) ?? String(error).slice(0, 200)
}
const Predicate_tag = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string"
    ? `${u._tag}${"reason" in u && typeof u.reason === "string" ? ` ${u.reason}` : ""}`
    : undefined

/** The reason the saga failed for, if it failed as an OrderFailed (not by a defect). */
const reasonOf = (cause: Cause.Cause<unknown>) =>
  Option.map(
    Chunk.findFirst(Cause.failures(cause), (e): e is OrderFailed => Predicate.isTagged(e, "OrderFailed")),
    (e) => e.reason
  )

export const OrderSagaLive = Layer.unwrapEffect(Effect.gen(function*() {
  const repo = yield* OrdersRepo
  const inventory = yield* InventoryClient
  const payments = yield* PaymentsClient
  const shipping = yield* ShippingClient

  /**
   * One step of an order's saga as an Activity: its calls carry the service identity, and its
   * start and end are written to the order's saga history.
   */
  const step = <A, I, E, EI>(
    orderId: string,
    name: string,
    phase: "action" | "compensation",
    schemas: { readonly success: Schema.Schema<A, I>; readonly error: Schema.Schema<E, EI> },
    effect: Effect.Effect<A, E>,
    detail?: string
  ) =>
    Activity.make({
      name: phase === "action" ? name : `undo-${name}`,
      success: schemas.success,
      error: schemas.error,
      execute: repo.logStep(orderId, name, phase, "started").pipe(
        Effect.zipRight(asService(effect)),
        Effect.onExit((exit) =>
          exit._tag === "Success"
            ? repo.logStep(orderId, name, phase, "succeeded", detail)
            : Cause.isInterruptedOnly(exit.cause)
            ? Effect.void
            : repo.logStep(orderId, name, phase, "failed", describe(exit.cause))
        )
      )
    })

  const load = (orderId: string) => Effect.map(repo.byId(orderId), Option.getOrThrow)

  const reserve = (order: OrderRow) =>
    retryCalls(
      inventory.reserve({
        reservationId: reservationIdOf(order.id),
        lines: order.items.map((item) => ({ productId: item.productId, quantity: item.quantity })) as any
      }),
      untilDone
    ).pipe(
      Effect.asVoid,
      Effect.catchAll((e) => e._tag === "StockInsufficient" ? Effect.fail(new OrderFailed({ reason: "OUT_OF_STOCK" })) : Effect.die(e))
    )

  const release = (order: OrderRow) =>
    retryCalls(inventory.release({ reservationId: reservationIdOf(order.id) }), untilDone).pipe(Effect.asVoid, Effect.orDie)

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
          currency: order.currency as any,
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

  /** Refunds until payments answers: a payment it never heard of has nothing to refund. */
  const refund = (order: OrderRow) =>
    payments.refund({ paymentId: paymentIdOf(order.id) }).pipe(
      Effect.retry({ schedule: untilDone, while: (e) => e instanceof CallError || e._tag === "PaymentUnavailable" }),
      Effect.asVoid,
      Effect.catchTag("PaymentNotFound", () => Effect.void),
      Effect.orDie
    )

  const ship = (order: OrderRow) =>
    retryCalls(
      shipping.create({ orderId: order.id, customerId: order.customerId, address: order.shippingAddress }),
      untilDone
    ).pipe(Effect.asVoid, Effect.orDie)

  /** Cancels the shipment; `false` when it has already shipped (nothing to undo any more). */
  const cancelShipment = (order: OrderRow) =>
    retryCalls(shipping.cancel({ orderId: order.id }), untilDone).pipe(
      Effect.as(true),
      Effect.catchTags({ ShipmentNotFound: () => Effect.succeed(true), ShipmentAlreadyShipped: () => Effect.succeed(false) }),
      Effect.orDie
    )

  /**
   * Unless its customer asked to cancel it meanwhile: the reservation committed (the stock is
   * sold), then the order CONFIRMED. A cancel asked for after the check is CancelOrder's to carry out.
   */
  const confirm = (order: OrderRow) =>
    Effect.gen(function*() {
      if ((yield* load(order.id)).cancelRequested) return yield* new OrderFailed({ reason: "CANCELLED_BY_CUSTOMER" })
      yield* commit(order)
      yield* repo.confirm(order.id)
    })

  const commit = (order: OrderRow) =>
    retryCalls(inventory.commit({ reservationId: reservationIdOf(order.id) }), untilDone).pipe(Effect.asVoid, Effect.orDie)

  /** Puts the order's units back on sale: the reservation is committed (if not yet), then each line restocked once. */
  const returnStock = (order: OrderRow) =>
    Effect.gen(function*() {
      yield* commit(order)
      for (const item of order.items) {
        yield* retryCalls(
          inventory.restock(
            { productId: item.productId, quantity: item.quantity },
            { headers: { [Idempotent.HEADER]: returnKeyOf(order.id, item.productId) } }
          ),
          untilDone
        ).pipe(Effect.orDie)
      }
    })

  const Void = { success: Schema.Void, error: Schema.Never }
  const Failing = { success: Schema.Void, error: OrderFailed }

  const placeOrder = PlaceOrder.toLayer(({ orderId }) =>
    Effect.gen(function*() {
      // Registered first, so it runs last: after every compensation, the outcome is written.
      yield* Workflow.addFinalizer((exit) => {
        if (exit._tag === "Success") return Effect.void
        const reason = reasonOf(exit.cause)
        return Option.isSome(reason)
          ? step(orderId, "record-outcome", "compensation", Void, repo.cancel(orderId, reason.value)).pipe(Effect.orDie)
          : step(orderId, "record-outcome", "compensation", Void, repo.setSagaState(orderId, "failed"), describe(exit.cause)).pipe(Effect.orDie)
      })
      // What the steps need of the order never changes once placed: read again on each replay.
      const order = yield* load(orderId)
      yield* step(orderId, "reserve-stock", "action", Failing, reserve(order)).pipe(
        Workflow.withCompensation(() => step(orderId, "reserve-stock", "compensation", Void, release(order)))
      )
      yield* step(orderId, "charge", "action", Failing, charge(order)).pipe(
        // A charge that failed may still have reached the provider: a refund of it is a no-op if not.
        Effect.tapError(() => step(orderId, "charge", "compensation", Void, refund(order))),
        Workflow.withCompensation(() => step(orderId, "charge", "compensation", Void, refund(order)))
      )
      yield* step(orderId, "create-shipment", "action", Void, ship(order)).pipe(
        Workflow.withCompensation(() => step(orderId, "create-shipment", "compensation", Void, cancelShipment(order)).pipe(Effect.asVoid))
      )
      yield* step(orderId, "confirm", "action", Failing, confirm(order))
    }).pipe(
      Effect.tapErrorCause(() =>
        step(orderId, "compensate", "compensation", Void, repo.setSagaState(orderId, "compensating")).pipe(Effect.orDie)
      )
    )
  )

  const cancelOrder = CancelOrder.toLayer(({ orderId }) =>
    Effect.gen(function*() {
      const outcome = yield* step(
        orderId,
        "await-outcome",
        "action",
        { success: OrderStatus, error: Schema.Never },
        // PlaceOrder decides first: it sees the request before charging and before confirming.
        load(orderId).pipe(
          Effect.filterOrFail((row) => row.status !== "PENDING", () => "pending" as const),
          Effect.retry(Schedule.spaced("200 millis")),
          Effect.map((row) => row.status),
          Effect.orDie
        )
      )
      if (outcome === "CANCELLED") return "cancelled" as const
      const order = yield* load(orderId)
      yield* step(orderId, "cancel", "compensation", Void, repo.setSagaState(orderId, "compensating"))
      const cancelled = yield* step(
        orderId,
        "create-shipment",
        "compensation",
        { success: Schema.Boolean, error: Schema.Never },
        cancelShipment(order)
      )
      if (!cancelled) {
        yield* step(orderId, "cancel-refused", "compensation", Void, Effect.zipRight(repo.dropCancel(orderId), repo.setSagaState(orderId, "completed")))
        return "shipped" as const
      }
      yield* step(orderId, "charge", "compensation", Void, refund(order))
      yield* step(orderId, "return-stock", "compensation", Void, returnStock(order))
      yield* step(orderId, "record-outcome", "compensation", Void, repo.cancel(orderId, "CANCELLED_BY_CUSTOMER"))
      return "cancelled" as const
    })
  )

  return Layer.mergeAll(placeOrder, cancelOrder)
}))
