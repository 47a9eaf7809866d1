/**
 * Implements the payments contract: each call checks its caller first. Charges and refunds are
 * for the order saga (the service `orders`) and admins; an order's payment is also shown to the
 * customer who paid it, and to no one else (PaymentNotFound, as if there were none).
 */
import { Effect, Layer } from "effect"
import * as Caller from "../../../runtime/security/Caller.ts"
import { PaymentNotFound, PaymentsRpcs } from "../PaymentsApi.ts"
import { Payments } from "./Payments.ts"
import { PaymentsRepo } from "./PaymentsRepo.ts"
import * as Provider from "./Provider.ts"

/** The module whose saga charges and refunds. */
const ORDERS = "orders"

export const PaymentsHandlers = PaymentsRpcs.toLayer(
  Effect.gen(function*() {
    const payments = yield* Payments
    return {
      charge: (request, { headers }) =>
        Effect.zipRight(Caller.requireAdminOrService(headers, ORDERS), payments.charge(request)),
      refund: ({ paymentId }, { headers }) =>
        Effect.zipRight(Caller.requireAdminOrService(headers, ORDERS), payments.refund(paymentId)),
      byOrder: ({ orderId }, { headers }) =>
        Effect.gen(function*() {
          const caller = yield* Caller.requireCaller(headers)
          const payment = yield* payments.byOrder(orderId)
          const mayRead = caller.isAdmin || caller.isService(ORDERS) || (caller.kind !== "service" && caller.id === payment.customerId)
          return mayRead ? payment : yield* new PaymentNotFound({ id: orderId })
        })
    }
  })
).pipe(Layer.provide(Payments.Default), Layer.provide(Layer.merge(PaymentsRepo.Default, Provider.layer)))
