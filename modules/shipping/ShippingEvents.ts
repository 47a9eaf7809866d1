/**
 * The events shipping publishes, each in the transaction that makes the change. A publisher may
 * add optional fields to an event; any other change is a new event under a new name
 * (runtime/messaging/Event.ts).
 */
import { Schema } from "effect"
import * as Event from "../../runtime/messaging/Event.ts"

/**
 * An order's shipment was created (on hold until its order is confirmed), with its tracking
 * number: published once per order, by the create that inserted it (a create of an order whose
 * cancellation came first makes a cancelled shipment and publishes nothing).
 */
export const ShipmentCreated = Event.make({
  publisher: "shipping",
  name: "ShipmentCreated",
  payload: Schema.Struct({
    orderId: Schema.String,
    customerId: Schema.String,
    trackingNumber: Schema.String
  }),
  aggregate: (event) => event.orderId
})
