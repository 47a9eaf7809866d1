/**
 * Orders' public REST routes, implemented by calling its client: they work wherever it runs. The
 * caller the gateway authenticated travels with each call; orders checks ownership itself.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiError, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Effect, Schema } from "effect"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import * as Problem from "../../runtime/gateway/Problem.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import * as Idempotent from "../../runtime/transport/Idempotent.ts"
import { Payment, PaymentNotFound } from "../payments/index.ts"
import { Shipment, ShipmentNotFound } from "../shipping/index.ts"
import {
  IdempotencyKey,
  IdempotencyKeyReused,
  NewOrder,
  Order,
  type OrderCursorInvalid,
  OrderId,
  OrderItemRefused,
  OrderNotCancellable,
  OrderNotFound,
  OrderPage,
  OrdersClient,
  OrderStatus,
  SagaPage
} from "./OrdersApi.ts"
import * as Saga from "../../runtime/saga/Saga.ts"

const allErrors = { parseOptions: { errors: "all" } } as const

/** A page size: decimal digits on the wire, described as the integer they spell. */
const Limit = Integer.pageSize

const Cursor = Text.line({ maxLength: 200 })

/** `Idempotency-Key` on a new order: required; the same key again answers the same order. */
const PlaceHeaders = Schema.Struct({
  [Idempotent.HEADER]: IdempotencyKey.annotations({
    description: "Required. The same key with the same order answers the same order (no second order, no second charge); " +
      "with another order, 422"
  })
})

const OrderSearch = Schema.Struct({
  status: Schema.optionalWith(Text.oneOf(OrderStatus), { exact: true }),
  limit: Schema.optionalWith(Limit, { exact: true }),
  cursor: Schema.optionalWith(Cursor, { exact: true })
}).annotations(allErrors)

const SagaSearch = Saga.SagaUrlParams.annotations(allErrors)

const orderPath = HttpApiSchema.param("id", OrderId)

export class OrdersHttp extends HttpApiGroup.make("orders")
  .add(
    HttpApiEndpoint.post("place", "/v1/orders")
      .setPayload(Problem.payload(NewOrder))
      .setHeaders(PlaceHeaders)
      .addSuccess(Order, { status: 202 })
      .addError(Problem.schema(OrderItemRefused))
      .addError(Problem.schema(IdempotencyKeyReused))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "Place an order; prices come from the catalog. Answers PENDING at once: follow GET /v1/orders/{id}")
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/orders")
      .setUrlParams(OrderSearch)
      .addSuccess(OrderPage)
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "Your orders, newest first, a page at a time (admins: everyone's); filter by status")
  )
  .add(
    HttpApiEndpoint.get("get")`/v1/orders/${orderPath}`
      .addSuccess(Order)
      .addError(Problem.schema(OrderNotFound))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "One of your orders (admins: any)")
  )
  .add(
    HttpApiEndpoint.post("cancel")`/v1/orders/${orderPath}/cancel`
      .addSuccess(Order, { status: 202 })
      .addError(Problem.schema(OrderNotFound))
      .addError(Problem.schema(OrderNotCancellable))
      .middleware(Auth.Authenticated)
      .annotate(
        OpenApi.Summary,
        "Cancel an order that has not shipped: refund, return the stock, cancel the shipment; it ends CANCELLED (CANCELLED_BY_CUSTOMER)"
      )
  )
  .add(
    HttpApiEndpoint.get("payment")`/v1/orders/${orderPath}/payment`
      .addSuccess(Payment)
      .addError(Problem.schema(OrderNotFound))
      .addError(Problem.schema(PaymentNotFound))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "The payment of one of your orders, as payments sees it")
  )
  .add(
    HttpApiEndpoint.get("shipment")`/v1/orders/${orderPath}/shipment`
      .addSuccess(Shipment)
      .addError(Problem.schema(OrderNotFound))
      .addError(Problem.schema(ShipmentNotFound))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "The shipment of one of your orders, with its tracking number, as shipping sees it")
  )
  .add(
    HttpApiEndpoint.get("listSagas", "/v1/admin/sagas")
      .setUrlParams(SagaSearch)
      .addSuccess(SagaPage)
      .middleware(Auth.AdminOnly)
      .annotate(OpenApi.Summary, "Order sagas (placing and cancelling) with their step history, newest first; filter by state (admin)")
  )
{}

/** A cursor this API did not hand out is a bad query parameter: a validation problem naming it. */
const invalidCursor = (error: OrderCursorInvalid | Saga.SagaCursorInvalid) =>
  Effect.fail(
    new HttpApiError.HttpApiDecodeError({
      issues: [{ _tag: "Type", path: ["cursor"], message: error.message }],
      message: `cursor: ${error.message}`
    })
  )

/**
 * The routes' middleware has already authenticated the caller (and checked the admin role):
 * orders refusing it as well is a bug, a defect.
 */
const checkedByRoute = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e): e is Extract<E, { readonly _tag: "Unauthenticated" | "Forbidden" }> =>
      (e as { _tag?: string })._tag === "Unauthenticated" || (e as { _tag?: string })._tag === "Forbidden",
    Effect.die
  ) as Effect.Effect<A, Exclude<E, { readonly _tag: "Unauthenticated" | "Forbidden" }>, R>

export const OrdersHttpLive = HttpApiBuilder.group(
  HttpApi.make(Gateway.API_ID).add(OrdersHttp),
  "orders",
  (handlers) =>
    Effect.gen(function*() {
      const orders = yield* OrdersClient
      const call = <A, E, R>(effect: Effect.Effect<A, E, R>) => checkedByRoute(Gateway.orUnavailable(effect))
      return handlers
        .handle("place", ({ headers, payload }) =>
          call(orders.place({ ...payload, idempotencyKey: headers[Idempotent.HEADER] })))
        .handle("list", ({ urlParams }) =>
          call(orders.list(urlParams)).pipe(Effect.catchTag("OrderCursorInvalid", invalidCursor)))
        .handle("get", ({ path }) => call(orders.get({ id: path.id })))
        .handle("cancel", ({ path }) => call(orders.cancel({ id: path.id })))
        .handle("payment", ({ path }) => call(orders.payment({ id: path.id })))
        .handle("shipment", ({ path }) => call(orders.shipment({ id: path.id })))
        .handle("listSagas", ({ urlParams }) =>
          call(orders.listSagas(urlParams)).pipe(Effect.catchTag("SagaCursorInvalid", invalidCursor)))
    })
)
