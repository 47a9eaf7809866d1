/**
 * A restock with an idempotency key is applied once: the same key again answers the same stock,
 * concurrently too; the key reused for another restock is refused. Through inventory's public
 * client, in process, on PostgreSQL and embedded; catalog stubbed.
 */
import { Effect, Either } from "effect"
import { expect, it } from "vitest"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import * as Idempotent from "../../runtime/transport/Idempotent.ts"
import { catalog, product } from "./CatalogStub.ts"
import { IdempotencyKeyReused, InventoryClient } from "./InventoryApi.ts"
import { InventoryModule } from "./InventoryModule.ts"

TestHost.describeOnDatabases("inventory restock keys", (database) => TestHost.layer([InventoryModule], database, [catalog]), (anyone) => {
  const run = TestHost.asAdmin(anyone)
  const keyed = (key: string) => ({ headers: { [Idempotent.HEADER]: key } })

  it("applies a keyed restock once and answers the same stock to the same key", async () => {
    const productId = product()
    const key = `k-${crypto.randomUUID()}`
    const [first, again, third] = await run(Effect.gen(function*() {
      const inventory = yield* InventoryClient
      const first = yield* inventory.restock({ productId, quantity: 5 }, keyed(key))
      const again = yield* inventory.restock({ productId, quantity: 5 }, keyed(key))
      // A restock without a key, or with another, is a new restock.
      yield* inventory.restock({ productId, quantity: 1 })
      const third = yield* inventory.restock({ productId, quantity: 5 }, keyed(`${key}-2`))
      return [first, again, third] as const
    }))
    expect(first).toMatchObject({ available: 5, reserved: 0 })
    expect(again).toMatchObject({ available: 5, reserved: 0 })
    expect(third).toMatchObject({ available: 11 })
    const stock = await run(Effect.flatMap(InventoryClient, (c) => c.get({ productId })))
    expect(stock.available).toBe(11)
  })

  it("applies concurrent restocks under one key once", async () => {
    const productId = product()
    const key = `k-${crypto.randomUUID()}`
    const answers = await run(Effect.flatMap(InventoryClient, (inventory) =>
      Effect.all(Array.from({ length: 8 }, () => inventory.restock({ productId, quantity: 3 }, keyed(key))), {
        concurrency: "unbounded"
      })))
    expect(answers.map((s) => s.available)).toEqual(Array(8).fill(3))
    expect((await run(Effect.flatMap(InventoryClient, (c) => c.get({ productId })))).available).toBe(3)
  })

  it("refuses a key reused for another product or quantity, adding nothing", async () => {
    const productId = product()
    const key = `k-${crypto.randomUUID()}`
    const result = await run(Effect.flatMap(InventoryClient, (inventory) =>
      Effect.gen(function*() {
        yield* inventory.restock({ productId, quantity: 2 }, keyed(key))
        return yield* Effect.either(inventory.restock({ productId, quantity: 7 }, keyed(key)))
      })))
    expect(Either.getLeft(result).pipe((e) => e._tag === "Some" ? e.value : undefined)).toBeInstanceOf(IdempotencyKeyReused)
    expect((await run(Effect.flatMap(InventoryClient, (c) => c.get({ productId })))).available).toBe(2)
  })
})
