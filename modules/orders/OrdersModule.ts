/** Orders' declaration for the runtime; imported only by the composition root. */
import { WorkflowEngine } from "@effect/workflow"
import { Layer } from "effect"
import * as Module from "../../runtime/Module.ts"
import { CatalogClient } from "../catalog/index.ts"
import { InventoryClient } from "../inventory/index.ts"
import { PaymentsClient } from "../payments/index.ts"
import { ShippingClient } from "../shipping/index.ts"
import { OrdersClient } from "./OrdersApi.ts"
import { OrdersHttp, OrdersHttpLive } from "./OrdersHttp.ts"
import { OrdersHandlers } from "./internal/OrdersHandlers.ts"

export const OrdersModule = Module.make({
  client: OrdersClient,
  // PLACEHOLDER until h/saga's `workflows` seam: an in-memory engine (not durable).
  handlers: OrdersHandlers.pipe(Layer.provide(WorkflowEngine.layerMemory)),
  calls: [CatalogClient, InventoryClient, PaymentsClient, ShippingClient],
  http: { group: OrdersHttp, layer: OrdersHttpLive }
})
