/**
 * For inventory's tests: catalog stubbed, knowing only the products a test made with `product()`
 * (any other id is `ProductNotFound`, as catalog answers).
 */
import { DateTime, Effect } from "effect"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { CatalogClient, type Currency, Product, ProductId, ProductNotFound, type Sku } from "../catalog/index.ts"

const known = new Set<string>()

/** A new product id that the stubbed catalog knows. */
export const product = () => {
  const id = ProductId.make(crypto.randomUUID())
  known.add(id)
  return id
}

/** Catalog's client, answering `get` for the products made with `product()`. */
export const catalog = TestHost.stub(CatalogClient, {
  get: ({ id }) =>
    known.has(id)
      ? Effect.succeed(
        new Product({
          id,
          sku: "SKU" as Sku,
          name: "Stub",
          description: "",
          priceCents: 1,
          currency: "EUR" as Currency,
          createdAt: DateTime.unsafeNow()
        })
      )
      : Effect.fail(new ProductNotFound({ productId: id }))
})
