/** Implements the orders contract with its use cases and runs its sagas. */
import type { Headers } from "@effect/platform"
import { Effect, Layer } from "effect"
import * as Caller from "../../../runtime/security/Caller.ts"
import { OrdersRpcs } from "../OrdersApi.ts"
import { Orders } from "./Orders.ts"
import { OrderSagaLive } from "./OrderSaga.ts"
import { OrdersRepo } from "./OrdersRepo.ts"
import { StartedSagas } from "./StartedSagas.ts"

/**
 * The caller of a `place`: a customer or an admin, placing an order of its own. A module is no
 * customer (a service gets rights by being named, never by its role): Forbidden.
 */
const buyer = (headers: Headers.Headers) =>
  Effect.filterOrFail(
    Caller.requireCaller(headers),
    (caller) => caller.kind !== "service",
    (caller) => new Caller.Forbidden({ reason: `module ${caller.id} may not place orders: a customer or an admin places an order` })
  )

export const OrdersHandlers = OrdersRpcs.toLayer(
  Effect.gen(function*() {
    const orders = yield* Orders
    return {
      place: (input, { headers }) => Effect.flatMap(buyer(headers), (caller) => orders.place(caller, input)),
      get: ({ id }, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => orders.get(caller, id)),
      list: (query, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => orders.list(caller, query)),
      cancel: ({ id }, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => orders.cancel(caller, id)),
      payment: ({ id }, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => orders.payment(caller, id)),
      shipment: ({ id }, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => orders.shipment(caller, id)),
      listSagas: (query, { headers }) => Effect.flatMap(Caller.requireAdmin(headers), () => orders.listSagas(query))
    }
  })
).pipe(
  Layer.provide(Orders.Default),
  Layer.provideMerge(OrderSagaLive),
  Layer.provideMerge(StartedSagas),
  Layer.provide(OrdersRepo.Default)
)
