/**
 * Inventory through its public client, in process, on PostgreSQL and on embedded PostgreSQL,
 * with the catalog stubbed: a product exists when the stub knows it.
 */
import { Effect, Either } from "effect"
import { expect, it } from "vitest"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { ProductId, ProductNotFound } from "../catalog/index.ts"
import { catalog, product } from "./CatalogStub.ts"
import {
  InventoryClient,
  MAX_UNITS,
  ReservationConflict,
  type ReservationId,
  ReservationNotFound,
  StockInsufficient,
  StockLimitExceeded
} from "./InventoryApi.ts"
import { InventoryModule } from "./InventoryModule.ts"

const reservation = () => `r-${crypto.randomUUID()}` as ReservationId


TestHost.describeOnDatabases("inventory", (database) => TestHost.layer([InventoryModule], database, [catalog]), (anyone) => {
  const run = TestHost.asAdmin(anyone)
  const inventory = <A, E>(f: (client: InventoryClient["Type"]) => Effect.Effect<A, E>) =>
    run(Effect.flatMap(InventoryClient, f))
  const attempt = <A, E>(f: (client: InventoryClient["Type"]) => Effect.Effect<A, E>) =>
    run(Effect.either(Effect.flatMap(InventoryClient, f)))
  const failure = async <A, E>(f: (client: InventoryClient["Type"]) => Effect.Effect<A, E>) => {
    const result = await attempt(f)
    if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
    return result.left
  }
  const levels = async (productId: ProductId) => {
    const stock = await inventory((c) => c.get({ productId }))
    return { available: stock.available, reserved: stock.reserved }
  }
  const stocked = async (units: number) => {
    const id = product()
    await inventory((c) => c.restock({ productId: id, quantity: units }))
    return id
  }

  it("restocks only products the catalog knows, and stores nothing otherwise", async () => {
    const stranger = ProductId.make(crypto.randomUUID())
    expect(await failure((c) => c.restock({ productId: stranger, quantity: 3 }))).toBeInstanceOf(ProductNotFound)
    expect(await failure((c) => c.get({ productId: stranger }))).toBeInstanceOf(ProductNotFound)
  })

  it("reads zero for a known product never restocked, and adds restocks up", async () => {
    const id = product()
    expect(await levels(id)).toEqual({ available: 0, reserved: 0 })
    await inventory((c) => c.restock({ productId: id, quantity: 4 }))
    await inventory((c) => c.restock({ productId: id, quantity: 6 }))
    expect(await levels(id)).toEqual({ available: 10, reserved: 0 })
  })

  it("refuses to hold more than MAX_UNITS, leaving the stock as it was", async () => {
    const id = await stocked(MAX_UNITS - 1)
    expect(await failure((c) => c.restock({ productId: id, quantity: 2 }))).toBeInstanceOf(StockLimitExceeded)
    expect(await levels(id)).toEqual({ available: MAX_UNITS - 1, reserved: 0 })
  })

  it("merges lines of one product and reserves all of them", async () => {
    const [a, b] = [await stocked(5), await stocked(5)]
    const held = await inventory((c) =>
      c.reserve({
        reservationId: reservation(),
        lines: [{ productId: a, quantity: 1 }, { productId: b, quantity: 2 }, { productId: a, quantity: 2 }]
      })
    )
    expect(held.status).toBe("held")
    expect([...held.lines].sort((x, y) => x.quantity - y.quantity)).toEqual([
      { productId: b, quantity: 2 },
      { productId: a, quantity: 3 }
    ])
    expect(await levels(a)).toEqual({ available: 2, reserved: 3 })
    expect(await levels(b)).toEqual({ available: 3, reserved: 2 })
  })

  it("reserves nothing when one line is short, and says how many are available", async () => {
    const [a, b] = [await stocked(5), await stocked(1)]
    const error = await failure((c) =>
      c.reserve({ reservationId: reservation(), lines: [{ productId: a, quantity: 5 }, { productId: b, quantity: 2 }] })
    )
    expect(error).toEqual(new StockInsufficient({ productId: b, requested: 2, available: 1 }))
    expect(await levels(a)).toEqual({ available: 5, reserved: 0 })
  })

  it("treats a never-restocked product as out of stock", async () => {
    const error = await failure((c) =>
      c.reserve({ reservationId: reservation(), lines: [{ productId: product(), quantity: 1 }] })
    )
    expect(error).toMatchObject({ _tag: "StockInsufficient", available: 0 })
  })

  it("answers a repeated reserve as before, and refuses the id for other lines", async () => {
    const id = await stocked(10)
    const reservationId = reservation()
    const first = await inventory((c) => c.reserve({ reservationId, lines: [{ productId: id, quantity: 4 }] }))
    expect(await inventory((c) => c.reserve({ reservationId, lines: [{ productId: id, quantity: 4 }] }))).toEqual(first)
    expect(await failure((c) => c.reserve({ reservationId, lines: [{ productId: id, quantity: 5 }] })))
      .toBeInstanceOf(ReservationConflict)
    expect(await levels(id)).toEqual({ available: 6, reserved: 4 })
  })

  it("commits once: the held units leave; release after commit is refused", async () => {
    const id = await stocked(10)
    const reservationId = reservation()
    await inventory((c) => c.reserve({ reservationId, lines: [{ productId: id, quantity: 3 }] }))
    expect((await inventory((c) => c.commit({ reservationId }))).status).toBe("committed")
    expect((await inventory((c) => c.commit({ reservationId }))).status).toBe("committed")
    expect(await levels(id)).toEqual({ available: 7, reserved: 0 })
    expect(await failure((c) => c.release({ reservationId }))).toBeInstanceOf(ReservationConflict)
  })

  it("releases once: the held units return; commit after release is refused", async () => {
    const id = await stocked(10)
    const reservationId = reservation()
    await inventory((c) => c.reserve({ reservationId, lines: [{ productId: id, quantity: 3 }] }))
    expect((await inventory((c) => c.release({ reservationId }))).lines).toHaveLength(1)
    expect((await inventory((c) => c.release({ reservationId }))).status).toBe("released")
    expect(await levels(id)).toEqual({ available: 10, reserved: 0 })
    expect(await failure((c) => c.commit({ reservationId }))).toBeInstanceOf(ReservationConflict)
  })

  it("remembers the release of an unknown id, so a late reserve is refused", async () => {
    const id = await stocked(3)
    const reservationId = reservation()
    expect(await inventory((c) => c.release({ reservationId }))).toMatchObject({ status: "released", lines: [] })
    expect(await failure((c) => c.reserve({ reservationId, lines: [{ productId: id, quantity: 1 }] })))
      .toBeInstanceOf(ReservationConflict)
    expect(await levels(id)).toEqual({ available: 3, reserved: 0 })
  })

  it("answers ReservationNotFound when committing an unknown id", async () => {
    expect(await failure((c) => c.commit({ reservationId: reservation() }))).toBeInstanceOf(ReservationNotFound)
  })

  it("never oversells: 50 concurrent reservations of 10 units reserve exactly 10", async () => {
    const id = await stocked(10)
    const results = await run(
      Effect.flatMap(InventoryClient, (c) =>
        Effect.all(
          Array.from({ length: 50 }, () =>
            Effect.either(c.reserve({ reservationId: reservation(), lines: [{ productId: id, quantity: 1 }] }))),
          { concurrency: "unbounded" }
        ))
    )
    expect(results.filter(Either.isRight)).toHaveLength(10)
    expect(results.filter((r) => Either.isLeft(r) && r.left instanceof StockInsufficient)).toHaveLength(40)
    expect(await levels(id)).toEqual({ available: 0, reserved: 10 })
  })
})
