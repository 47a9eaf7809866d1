/** Implements the inventory contract with its use cases. */
import type { Headers } from "@effect/platform"
import { Effect, Layer, Option, Schema } from "effect"
import * as Caller from "../../../runtime/security/Caller.ts"
import * as Idempotent from "../../../runtime/transport/Idempotent.ts"
import { IdempotencyKey, InventoryRpcs } from "../InventoryApi.ts"

const decodeKey = Schema.decodeUnknown(IdempotencyKey)

/**
 * The call's idempotency key, if it carries one. The gateway checks a client's key; a malformed
 * one from another module is that module's bug: a defect naming the rule.
 */
const idempotencyKey = (headers: Headers.Headers) => {
  const raw = headers[Idempotent.HEADER]
  return raw === undefined
    ? Effect.succeed(Option.none<string>())
    : decodeKey(raw).pipe(
      Effect.map(Option.some),
      Effect.orDieWith(() => new Error("an idempotency key is 1-200 visible ASCII characters"))
    )
}
import { Inventory } from "./Inventory.ts"

/** Reservations are the order saga's: the orders module on its own account, or an admin. */
const stockHolder = (headers: Headers.Headers) => Caller.requireAdminOrService(headers, "orders")

export const InventoryHandlers = InventoryRpcs.toLayer(
  Effect.gen(function*() {
    const inventory = yield* Inventory
    return {
      restock: ({ productId, quantity }, { headers }) =>
        Caller.requireAdmin(headers).pipe(
          Effect.zipRight(idempotencyKey(headers)),
          Effect.flatMap((key) => inventory.restock(productId, quantity, key))
        ),
      get: ({ productId }) => inventory.get(productId),
      reserve: ({ lines, reservationId }, { headers }) =>
        Effect.zipRight(stockHolder(headers), inventory.reserve(reservationId, lines)),
      release: ({ reservationId }, { headers }) => Effect.zipRight(stockHolder(headers), inventory.release(reservationId)),
      commit: ({ reservationId }, { headers }) => Effect.zipRight(stockHolder(headers), inventory.commit(reservationId))
    }
  })
).pipe(Layer.provide(Inventory.Default))
