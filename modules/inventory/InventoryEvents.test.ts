/**
 * Inventory's events, as a subscriber in the same process gets them: a reservation that takes a
 * product's available units below TESSERA_INVENTORY_LOW_STOCK (here 5) publishes one StockLow,
 * once per crossing; reservations that stay below it, or are refused, publish nothing more,
 * until a restock has taken the product back up and a reservation crosses again. The subscriber
 * is a module of this test, which imports inventory's index.ts only, as any subscriber would.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schema } from "effect"
import { expect, it } from "vitest"
import * as Event from "../../runtime/messaging/Event.ts"
import * as Module from "../../runtime/Module.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { catalog, product } from "./CatalogStub.ts"
import { InventoryClient, type ReservationId, StockLow } from "./index.ts"
import { InventoryModule } from "./InventoryModule.ts"

class Seen extends Schema.Class<Seen>("lowwatch/Seen")({
  productId: Schema.String,
  available: Schema.Number,
  threshold: Schema.Number
}) {}

class WatcherRpcs extends RpcGroup.make(Rpc.make("seen", { payload: { productId: Schema.String }, success: Schema.Array(Seen) })) {}
class WatcherClient extends Module.ModuleClient("lowwatch", WatcherRpcs)<WatcherClient>() {}

const Watcher = Module.make({
  client: WatcherClient,
  handlers: WatcherRpcs.toLayer(Effect.map(SqlClient.SqlClient, (sql) => ({
    seen: ({ productId }: { readonly productId: string }) =>
      sql<Seen>`SELECT product_id AS "productId", available, threshold FROM seen WHERE product_id = ${productId} ORDER BY seq`.pipe(
        Effect.map((rows) => rows.map((r) => new Seen(r))),
        Effect.orDie
      )
  }))).pipe(Layer.provideMerge(Layer.effectDiscard(Effect.orDie(Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE IF NOT EXISTS seen (seq bigint GENERATED ALWAYS AS IDENTITY, product_id uuid NOT NULL,
        available integer NOT NULL, threshold integer NOT NULL)`))))),
  subscribes: [
    Event.on(StockLow, (low) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`INSERT INTO seen (product_id, available, threshold) VALUES (${low.productId}, ${low.available}, ${low.threshold})`))
  ]
})

const reservation = () => `r-${crypto.randomUUID()}` as ReservationId

TestHost.describeOnDatabases(
  "inventory's events",
  (database) => TestHost.layer([InventoryModule, Watcher], database, [catalog], { TESSERA_INVENTORY_LOW_STOCK: "5" }),
  (anyone) => {
    const run = TestHost.asAdmin(anyone)
    const inventory = <A, E>(f: (client: InventoryClient["Type"]) => Effect.Effect<A, E>) => run(Effect.flatMap(InventoryClient, f))
    const reserve = (productId: ReturnType<typeof product>, quantity: number) =>
      inventory((c) => c.reserve({ reservationId: reservation(), lines: [{ productId, quantity }] }))

    /** What the watcher has seen of `productId` once it has `count` events (or after `waitMs`). */
    const seen = (productId: string, count: number, waitMs = 10_000) =>
      run(Effect.gen(function*() {
        const deadline = Date.now() + waitMs
        while (true) {
          const rows = yield* Effect.flatMap(WatcherClient, (c) => c.seen({ productId }))
          if (rows.length >= count || Date.now() > deadline) return rows.map((r) => ({ ...r }))
          yield* Effect.sleep("20 millis")
        }
      }))

    it("publishes StockLow once when a reservation takes the available units below the threshold, and again after a restock", async () => {
      const id = product()
      await inventory((c) => c.restock({ productId: id, quantity: 8 }))
      await reserve(id, 3) // 5 left: not below
      await reserve(id, 2) // 3 left: crossed
      await reserve(id, 1) // 2 left: still below, nothing more
      expect(await inventory((c) => c.reserve({ reservationId: reservation(), lines: [{ productId: id, quantity: 9 }] })).then(
        () => "reserved",
        () => "refused"
      )).toBe("refused")
      await inventory((c) => c.restock({ productId: id, quantity: 10 })) // 12 left
      await reserve(id, 12) // 0 left: crossed again
      expect(await seen(id, 2)).toEqual([
        { productId: id, available: 3, threshold: 5 },
        { productId: id, available: 0, threshold: 5 }
      ])
      // Nothing else comes: a later product's event arrives, and this one's list is the same.
      const later = product()
      await inventory((c) => c.restock({ productId: later, quantity: 6 }))
      await reserve(later, 6)
      expect(await seen(later, 1)).toHaveLength(1)
      expect(await seen(id, 3, 1_500)).toHaveLength(2)
    })

    it("publishes nothing for a reservation that is rolled back, even if a line of it crossed", async () => {
      const low = product()
      const short = product()
      await inventory((c) => c.restock({ productId: low, quantity: 6 }))
      await inventory((c) => c.restock({ productId: short, quantity: 1 }))
      const refused = await inventory((c) =>
        c.reserve({ reservationId: reservation(), lines: [{ productId: low, quantity: 4 }, { productId: short, quantity: 2 }] })
      ).then(() => "reserved", () => "refused")
      expect(refused).toBe("refused")
      // The same crossing, committed this time, is the product's first event.
      await reserve(low, 4)
      expect(await seen(low, 1)).toEqual([{ productId: low, available: 2, threshold: 5 }])
      expect(await seen(low, 2, 1_500)).toHaveLength(1)
    })
  }
)
