/**
 * The events inventory publishes, each in the transaction that makes the change. A publisher may
 * add optional fields to an event; any other change is a new event under a new name
 * (runtime/messaging/Event.ts).
 */
import { Schema } from "effect"
import { ProductId } from "../catalog/index.ts"
import * as Event from "../../runtime/messaging/Event.ts"

/**
 * A reservation took a product's available units below the low-stock threshold
 * (`TESSERA_INVENTORY_LOW_STOCK`): once per crossing, by the reservation that crossed it; the
 * product crosses again only after a restock or a release has taken it back to the threshold.
 */
export const StockLow = Event.make({
  publisher: "inventory",
  name: "StockLow",
  payload: Schema.Struct({
    productId: ProductId,
    /** Units still available after the reservation. */
    available: Schema.Int,
    /** The threshold in force when it crossed. */
    threshold: Schema.Int
  }),
  aggregate: (event) => event.productId
})
