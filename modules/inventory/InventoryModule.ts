/** Inventory's declaration for the runtime; imported only by the composition root. */
import * as Module from "../../runtime/Module.ts"
import { CatalogClient } from "../catalog/index.ts"
import { InventoryClient } from "./InventoryApi.ts"
import { StockLow } from "./InventoryEvents.ts"
import { StockHttp, StockHttpLive } from "./InventoryHttp.ts"
import { lowStock } from "./internal/Inventory.ts"
import { InventoryHandlers } from "./internal/InventoryHandlers.ts"

export const InventoryModule = Module.make({
  client: InventoryClient,
  handlers: InventoryHandlers,
  calls: [CatalogClient],
  publishes: [StockLow],
  http: { group: StockHttp, layer: StockHttpLive },
  settings: [lowStock]
})
