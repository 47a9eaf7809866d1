/** Implements the inventory contract with its use cases. */
import { Effect, Layer } from "effect"
import { InventoryRpcs } from "../InventoryApi.ts"
import { Inventory } from "./Inventory.ts"

export const InventoryHandlers = InventoryRpcs.toLayer(
  Effect.gen(function*() {
    const inventory = yield* Inventory
    return {
      restock: ({ productId, quantity }) => inventory.restock(productId, quantity),
      get: ({ productId }) => inventory.get(productId),
      reserve: ({ lines, reservationId }) => inventory.reserve(reservationId, lines),
      release: ({ reservationId }) => inventory.release(reservationId),
      commit: ({ reservationId }) => inventory.commit(reservationId)
    }
  })
).pipe(Layer.provide(Inventory.Default))
