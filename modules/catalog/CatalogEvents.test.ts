/**
 * The catalog's events, as a subscriber in the same process gets them: a product created is one
 * ProductCreated with its fields; a create refused (a taken SKU) publishes nothing. The subscriber
 * is a module of this test, which imports the catalog's index.ts only, as any subscriber would.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Schema } from "effect"
import { expect, it } from "vitest"
import * as Event from "../../runtime/messaging/Event.ts"
import * as Module from "../../runtime/Module.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { CatalogModule } from "./CatalogModule.ts"
import { CatalogClient, type NewProduct, ProductCreated, SkuTaken } from "./index.ts"

class Seen extends Schema.Class<Seen>("watcher/Seen")({
  messageId: Schema.String,
  productId: Schema.String,
  sku: Schema.String,
  name: Schema.String,
  priceCents: Schema.Number,
  currency: Schema.String
}) {}

class WatcherRpcs extends RpcGroup.make(Rpc.make("seen", { success: Schema.Array(Seen) })) {}
class WatcherClient extends Module.ModuleClient("watcher", WatcherRpcs)<WatcherClient>() {}

const Watcher = Module.make({
  client: WatcherClient,
  handlers: WatcherRpcs.toLayer(Effect.map(SqlClient.SqlClient, (sql) => ({
    seen: () =>
      sql<Seen>`SELECT message_id AS "messageId", product_id AS "productId", sku, name, price_cents AS "priceCents", currency
                FROM seen ORDER BY seq`.pipe(Effect.map((rows) => rows.map((r) => new Seen(r))), Effect.orDie)
  }))).pipe(Layer.provideMerge(Layer.effectDiscard(Effect.orDie(Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE IF NOT EXISTS seen (seq bigint GENERATED ALWAYS AS IDENTITY, message_id uuid NOT NULL, product_id uuid NOT NULL,
        sku text NOT NULL, name text NOT NULL, price_cents integer NOT NULL, currency text NOT NULL)`))))),
  subscribes: [
    Event.on(ProductCreated, (product, delivery) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql`INSERT INTO seen (message_id, product_id, sku, name, price_cents, currency)
            VALUES (${delivery.messageId}, ${product.productId}, ${product.sku}, ${product.name}, ${product.priceCents}, ${product.currency})`))
  ]
})

const unique = () => Math.random().toString(36).slice(2, 10)

TestHost.describeOnDatabases("the catalog's events", (database) => TestHost.layer([CatalogModule, Watcher], database), (anyone) => {
  const run = TestHost.asAdmin(anyone)

  const seenFor = (sku: string, timeoutMs = 10_000) =>
    run(Effect.gen(function*() {
      const deadline = Date.now() + timeoutMs
      while (true) {
        const seen = (yield* Effect.flatMap(WatcherClient, (c) => c.seen())).filter((s) => s.sku === sku)
        if (seen.length > 0 || Date.now() > deadline) return seen
        yield* Effect.sleep("20 millis")
      }
    }))

  it("publishes ProductCreated with the product's fields when a product is created", async () => {
    const input = { sku: `EV-${unique()}`, name: "Lamp", priceCents: 4200, currency: "EUR" } as NewProduct
    const product = await run(Effect.flatMap(CatalogClient, (c) => c.create(input)))
    const seen = await seenFor(product.sku)
    expect(seen.map(({ messageId: _, ...fields }) => fields)).toEqual([
      { productId: product.id, sku: product.sku, name: "Lamp", priceCents: 4200, currency: "EUR" }
    ])
  })

  it("publishes nothing for a create that is refused", async () => {
    const sku = `EV-${unique()}`
    await run(Effect.flatMap(CatalogClient, (c) => c.create({ sku, name: "First", priceCents: 1, currency: "EUR" } as NewProduct)))
    const refused = await run(Effect.flip(Effect.flatMap(CatalogClient, (c) => c.create({ sku, name: "Second", priceCents: 2, currency: "EUR" } as NewProduct))))
    expect(refused).toBeInstanceOf(SkuTaken)
    // A later product's event arrives; the refused one would have come before it.
    const later = `EV-${unique()}`
    await run(Effect.flatMap(CatalogClient, (c) => c.create({ sku: later, name: "Later", priceCents: 3, currency: "EUR" } as NewProduct)))
    expect(await seenFor(later)).toHaveLength(1)
    expect((await seenFor(sku, 0)).map((s) => s.name)).toEqual(["First"])
  })
})
