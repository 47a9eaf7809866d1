/** Shipping's declaration for the runtime; imported only by the composition root. */
import * as Module from "../../runtime/Module.ts"
import { ShippingClient } from "./ShippingApi.ts"
import { ShipmentCreated } from "./ShippingEvents.ts"
import { ShippingHandlers } from "./internal/ShippingHandlers.ts"

export const ShippingModule = Module.make({
  client: ShippingClient,
  handlers: ShippingHandlers,
  publishes: [ShipmentCreated]
})
