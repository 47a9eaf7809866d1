/** Implements the shipping contract with its use cases, each behind the check of its caller. */
import { Effect, Layer } from "effect"
import * as Caller from "../../../runtime/security/Caller.ts"
import { ShippingRpcs } from "../ShippingApi.ts"
import { ORDERS, Shipping } from "./Shipping.ts"

export const ShippingHandlers = ShippingRpcs.toLayer(
  Effect.gen(function*() {
    const shipping = yield* Shipping
    return {
      create: ({ address, customerId, orderId }, { headers }) =>
        Effect.zipRight(Caller.requireAdminOrService(headers, ORDERS), shipping.create(orderId, customerId, address)),
      cancel: ({ orderId }, { headers }) => Effect.zipRight(Caller.requireAdminOrService(headers, ORDERS), shipping.cancel(orderId)),
      release: ({ orderId }, { headers }) => Effect.zipRight(Caller.requireAdminOrService(headers, ORDERS), shipping.release(orderId)),
      markShipped: ({ orderId }, { headers }) => Effect.zipRight(Caller.requireAdmin(headers), shipping.markShipped(orderId)),
      byOrder: ({ orderId }, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => shipping.byOrder(caller, orderId))
    }
  })
).pipe(Layer.provide(Shipping.Default))
