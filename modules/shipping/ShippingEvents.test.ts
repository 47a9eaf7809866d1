/**
 * Shipping's events, as a subscriber in the same process gets them: a create that makes a
 * shipment publishes one ShipmentCreated with its order, customer and tracking number; the same
 * create again publishes nothing, and neither does a create that fills in a cancellation that
 * came first (its shipment is born cancelled). The subscriber is a module of this test, which
 * imports shipping's index.ts only, as any subscriber would.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schema } from "effect"
import { expect, it } from "vitest"
import * as Event from "../../runtime/messaging/Event.ts"
import * as Module from "../../runtime/Module.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { ShipmentCreated, ShippingClient } from "./index.ts"
import { ShippingModule } from "./ShippingModule.ts"

class Seen extends Schema.Class<Seen>("shipwatch/Seen")({
  orderId: Schema.String,
  customerId: Schema.String,
  trackingNumber: Schema.String
}) {}

class WatcherRpcs extends RpcGroup.make(Rpc.make("seen", { payload: { orderId: Schema.String }, success: Schema.Array(Seen) })) {}
class WatcherClient extends Module.ModuleClient("shipwatch", WatcherRpcs)<WatcherClient>() {}

const Watcher = Module.make({
  client: WatcherClient,
  handlers: WatcherRpcs.toLayer(Effect.map(SqlClient.SqlClient, (sql) => ({
    seen: ({ orderId }: { readonly orderId: string }) =>
      sql<Seen>`SELECT order_id AS "orderId", customer_id AS "customerId", tracking_number AS "trackingNumber"
                FROM seen WHERE order_id = ${orderId} ORDER BY seq`.pipe(Effect.map((rows) => rows.map((r) => new Seen(r))), Effect.orDie)
  }))).pipe(Layer.provideMerge(Layer.effectDiscard(Effect.orDie(Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE IF NOT EXISTS seen (seq bigint GENERATED ALWAYS AS IDENTITY, order_id text NOT NULL,
        customer_id text NOT NULL, tracking_number text NOT NULL)`))))),
  subscribes: [
    Event.on(ShipmentCreated, (shipment) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`INSERT INTO seen (order_id, customer_id, tracking_number)
            VALUES (${shipment.orderId}, ${shipment.customerId}, ${shipment.trackingNumber})`))
  ]
})

const address = { name: "Ada Lovelace", line1: "12 St James's Square", city: "London", postalCode: "SW1Y 4JH", country: "GB" }

TestHost.describeOnDatabases("shipping's events", (database) => TestHost.layer([ShippingModule, Watcher], database), (anyone) => {
  const run = TestHost.asAdmin(anyone)
  const shipping = <A, E>(f: (client: ShippingClient["Type"]) => Effect.Effect<A, E>) => run(Effect.flatMap(ShippingClient, f))

  /** What the watcher has seen of `orderId` once it has `count` events (or after `waitMs`). */
  const seen = (orderId: string, count: number, waitMs = 10_000) =>
    run(Effect.gen(function*() {
      const deadline = Date.now() + waitMs
      while (true) {
        const rows = yield* Effect.flatMap(WatcherClient, (c) => c.seen({ orderId }))
        if (rows.length >= count || Date.now() > deadline) return rows.map((r) => ({ ...r }))
        yield* Effect.sleep("20 millis")
      }
    }))

  it("publishes ShipmentCreated once per order, with its tracking number, however often it is created", async () => {
    const orderId = `order-${crypto.randomUUID()}`
    const customerId = crypto.randomUUID()
    const shipment = await shipping((c) => c.create({ orderId, customerId, address }))
    await shipping((c) => c.create({ orderId, customerId, address }))
    expect(await seen(orderId, 1)).toEqual([{ orderId, customerId, trackingNumber: shipment.trackingNumber }])
    expect(await seen(orderId, 2, 1_500)).toHaveLength(1)
  })

  it("publishes nothing for a create whose order was cancelled first", async () => {
    const orderId = `order-${crypto.randomUUID()}`
    // A cancel before any create answers ShipmentNotFound and leaves its row.
    await shipping((c) => Effect.either(c.cancel({ orderId })))
    const shipment = await shipping((c) => c.create({ orderId, customerId: crypto.randomUUID(), address }))
    expect(shipment.status).toBe("cancelled")
    expect(await seen(orderId, 1, 1_500)).toEqual([])
  })
})
