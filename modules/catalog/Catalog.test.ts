/** The catalog through its public client, in process, on PostgreSQL and on embedded PostgreSQL. */
import { Effect } from "effect"
import { expect, it } from "vitest"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { CatalogClient, CursorInvalid, type NewProduct, Product, ProductId, ProductNotFound, SkuTaken } from "./CatalogApi.ts"
import { CatalogModule } from "./CatalogModule.ts"

const unique = () => Math.random().toString(36).slice(2, 10)

const newProduct = (fields: Partial<Record<keyof NewProduct, unknown>> = {}) =>
  ({ sku: `SKU-${unique()}`, name: "Widget", priceCents: 1299, currency: "EUR", ...fields }) as NewProduct

TestHost.describeOnDatabases("catalog", (database) => TestHost.layer([CatalogModule], database), (anyone) => {
  const run = TestHost.asAdmin(anyone)
  const catalog = <A, E>(f: (client: CatalogClient["Type"]) => Effect.Effect<A, E>) => run(Effect.flatMap(CatalogClient, f))
  const fail = <A, E>(f: (client: CatalogClient["Type"]) => Effect.Effect<A, E>) =>
    run(Effect.flip(Effect.flatMap(CatalogClient, f)))

  it("creates a product and reads it back", async () => {
    const created = await catalog((c) => c.create(newProduct({ description: "Tall" })))
    expect(created).toBeInstanceOf(Product)
    expect(created).toMatchObject({ name: "Widget", description: "Tall", priceCents: 1299, currency: "EUR" })
    expect(await catalog((c) => c.get({ id: created.id }))).toEqual(created)
  })

  it("defaults the description to empty", async () => {
    expect((await catalog((c) => c.create(newProduct()))).description).toBe("")
  })

  it("refuses a taken SKU", async () => {
    const first = await catalog((c) => c.create(newProduct()))
    const error = await fail((c) => c.create(newProduct({ sku: first.sku })))
    expect(error).toBeInstanceOf(SkuTaken)
    expect(error).toMatchObject({ sku: first.sku })
  })

  it("answers ProductNotFound for an unknown id", async () => {
    const id = ProductId.make("3f1c2b7e-9d5a-4c8e-b6f0-1a2b3c4d5e6f")
    expect(await fail((c) => c.get({ id }))).toEqual(new ProductNotFound({ productId: id }))
  })

  it("pages through a search in creation order", async () => {
    const token = unique()
    const made: Array<Product> = []
    for (let i = 0; i < 5; i++) made.push(await catalog((c) => c.create(newProduct({ name: `Chair ${token} ${i}` }))))
    const pages: Array<ReadonlyArray<string>> = []
    let cursor: string | undefined
    do {
      const page = await catalog((c) => c.list({ q: token, limit: 2, ...(cursor ? { cursor } : {}) }))
      pages.push(page.items.map((p) => p.id))
      cursor = page.nextCursor ?? undefined
    } while (cursor !== undefined)
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
    expect(pages.flat()).toEqual(made.map((p) => p.id))
  })

  it("pages through products created within one millisecond, every one once, at every page size", async () => {
    const token = unique()
    const made: Array<Product> = []
    for (let i = 0; i < 4; i++) made.push(await catalog((c) => c.create(newProduct({ name: `Stool ${token} ${i}` }))))
    await anyone(TestHost.crowdCreatedAt("catalog", "products", made.map((p) => p.id).reverse()))
    for (let limit = 1; limit <= 4; limit++) {
      const walked: Array<string> = []
      let cursor: string | undefined
      do {
        const page = await catalog((c) => c.list({ q: token, limit, ...(cursor ? { cursor } : {}) }))
        walked.push(...page.items.map((p) => p.id))
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
      expect(walked, `limit ${limit}`).toEqual(made.map((p) => p.id))
    }
  })

  it("searches SKU and description too, case-insensitively", async () => {
    const token = unique()
    const bySku = await catalog((c) => c.create(newProduct({ sku: `X-${token}` })))
    const byDescription = await catalog((c) => c.create(newProduct({ description: `made by ${token.toUpperCase()}` })))
    const found = await catalog((c) => c.list({ q: token }))
    expect(found.items.map((p) => p.id)).toEqual([bySku.id, byDescription.id])
  })

  it("gives a page of 20 by default", async () => {
    const token = unique()
    for (let i = 0; i < 21; i++) await catalog((c) => c.create(newProduct({ name: `Bulk ${token}` })))
    const page = await catalog((c) => c.list({ q: token }))
    expect(page.items).toHaveLength(20)
    expect(page.nextCursor).not.toBeNull()
  })

  it("refuses a cursor it did not hand out", async () => {
    expect(await fail((c) => c.list({ cursor: "bm90LWEtY3Vyc29y" }))).toBeInstanceOf(CursorInvalid)
  })
})
