/** The catalog's use cases. */
import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"
import * as Outbox from "../../../runtime/messaging/Outbox.ts"
import * as PgError from "../../../runtime/db/PgError.ts"
import { ProductCreated } from "../CatalogEvents.ts"
import { CursorInvalid, type NewProduct, Product, ProductId, ProductNotFound, ProductPage, type ProductQuery } from "../CatalogApi.ts"
import * as Text from "../../../runtime/schema/Text.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"
import { ProductsRepo } from "./ProductsRepo.ts"

export const DEFAULT_PAGE_SIZE = 20

export class Catalog extends Effect.Service<Catalog>()("catalog/Catalog", {
  effect: Effect.gen(function*() {
    const repo = yield* ProductsRepo
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox.Outbox

    const create = Effect.fn("Catalog.create")(function*(input: NewProduct) {
      const product = new Product({
        id: ProductId.make(crypto.randomUUID()),
        sku: input.sku,
        name: input.name,
        description: input.description ?? "",
        priceCents: input.priceCents,
        currency: input.currency,
        createdAt: yield* DateTime.now
      })
      // The product and its ProductCreated commit together, or neither does.
      yield* sql.withTransaction(Effect.zipRight(
        repo.insert(product),
        outbox.publish(ProductCreated, {
          productId: product.id,
          sku: product.sku,
          name: product.name,
          priceCents: product.priceCents,
          currency: product.currency
        })
      )).pipe(Effect.catchTag("SqlError", PgError.die))
      return product
    })

    const get = Effect.fn("Catalog.get")(function*(id: ProductId) {
      const found = yield* repo.findById(id)
      return yield* Option.match(found, {
        onNone: () => Effect.fail(new ProductNotFound({ productId: id })),
        onSome: Effect.succeed
      })
    })

    const list = Effect.fn("Catalog.list")(function*(query: ProductQuery) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE
      let after: Cursor.Position | undefined
      if (query.cursor !== undefined) {
        const cursor = query.cursor
        after = yield* Option.match(Cursor.decode(cursor), {
          onNone: () => Effect.fail(new CursorInvalid({ cursor: Text.quote(cursor) })),
          onSome: Effect.succeed
        })
      }
      // One row more than the page tells whether another page follows.
      const rows = yield* repo.search({ q: query.q, after, limit: limit + 1 })
      return new ProductPage(Cursor.page(rows, limit))
    })

    return { create, get, list } as const
  }),
  dependencies: [ProductsRepo.Default]
}) {}
