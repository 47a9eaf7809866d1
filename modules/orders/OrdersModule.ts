/** Orders' declaration for the runtime; imported only by the composition root. */
import * as Module from "../../runtime/Module.ts"
import { CatalogClient } from "../catalog/index.ts"
import { InventoryClient } from "../inventory/index.ts"
import { PaymentsClient } from "../payments/index.ts"
import { ShippingClient } from "../shipping/index.ts"
import { OrdersClient } from "./OrdersApi.ts"
import { OrderCancelled, OrderConfirmed } from "./OrdersEvents.ts"
import { OrdersHttp, OrdersHttpLive } from "./OrdersHttp.ts"
import { OrdersHandlers } from "./internal/OrdersHandlers.ts"
import { CancelOrder, PlaceOrder } from "./internal/OrderSaga.ts"
import { resumeAfter } from "./internal/StartedSagas.ts"

export const OrdersModule = Module.make({
  client: OrdersClient,
  handlers: OrdersHandlers,
  workflows: [PlaceOrder, CancelOrder],
  publishes: [OrderConfirmed, OrderCancelled],
  calls: [CatalogClient, InventoryClient, PaymentsClient, ShippingClient],
  http: { group: OrdersHttp, layer: OrdersHttpLive },
  settings: [resumeAfter]
})
