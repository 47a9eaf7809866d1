/**
 * The events the catalog publishes. A publisher may add optional fields to an event; any other
 * change is a new event under a new name (runtime/messaging/Event.ts).
 */
import { Schema } from "effect"
import * as Event from "../../runtime/messaging/Event.ts"
import { Currency, PriceCents, ProductId, Sku } from "./CatalogApi.ts"

/** A product was added to the catalog (published by the transaction that inserted it). */
export const ProductCreated = Event.make({
  publisher: "catalog",
  name: "ProductCreated",
  payload: Schema.Struct({
    productId: ProductId,
    sku: Sku,
    name: Schema.String,
    priceCents: PriceCents,
    currency: Currency
  }),
  aggregate: (event) => event.productId
})
