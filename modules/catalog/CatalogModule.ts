/** The catalog's declaration for the runtime; imported only by the composition root. */
import * as Module from "../../runtime/Module.ts"
import { CatalogClient } from "./CatalogApi.ts"
import { ProductCreated } from "./CatalogEvents.ts"
import { ProductsHttp, ProductsHttpLive, staleFor } from "./CatalogHttp.ts"
import { CatalogHandlers } from "./internal/CatalogHandlers.ts"

export const CatalogModule = Module.make({
  client: CatalogClient,
  handlers: CatalogHandlers,
  publishes: [ProductCreated],
  http: { group: ProductsHttp, layer: ProductsHttpLive },
  settings: [staleFor]
})
