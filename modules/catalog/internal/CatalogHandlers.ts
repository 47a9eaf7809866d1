/** Implements the catalog contract with its use cases. */
import { Effect, Layer } from "effect"
import * as Caller from "../../../runtime/security/Caller.ts"
import { CatalogRpcs } from "../CatalogApi.ts"
import { Catalog } from "./Catalog.ts"

export const CatalogHandlers = CatalogRpcs.toLayer(
  Effect.gen(function*() {
    const catalog = yield* Catalog
    return {
      create: (product, { headers }) => Effect.zipRight(Caller.requireAdmin(headers), catalog.create(product)),
      get: ({ id }) => catalog.get(id),
      list: (query) => catalog.list(query)
    }
  })
).pipe(Layer.provide(Catalog.Default))
