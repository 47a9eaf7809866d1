import { describe, expect, it } from "@effect/vitest"
import { DateTime, Either, Schema } from "effect"
import * as Copy from "./Copy.ts"

/** Every field immutable: instances are handed over as they are. */
class Product extends Schema.Class<Product>("test/Product")({
  id: Schema.UUID,
  name: Schema.NonEmptyString,
  priceCents: Schema.Int.pipe(Schema.positive()),
  note: Schema.optional(Schema.String),
  state: Schema.Literal("draft", "live"),
  createdAt: Schema.DateTimeUtc
}) {}

/** A field holding an array: instances are rebuilt. */
class Page extends Schema.Class<Page>("test/Page")({
  items: Schema.Array(Product),
  next: Schema.NullOr(Schema.String)
}) {}

class Gone extends Schema.TaggedError<Gone>()("Gone", { id: Schema.String }) {}

const product = new Product({
  id: "5f0c8a9e-2d4b-4c3a-9a7e-1b2c3d4e5f60",
  name: "Lamp",
  priceCents: 1200,
  state: "live",
  createdAt: DateTime.unsafeMake("2026-01-02T03:04:05Z")
})

const right = (result: Either.Either<unknown, unknown>) => Either.getOrThrowWith(result, (issue) => new Error(String(issue)))

describe("Copy.immutable", () => {
  it("holds for primitives, literals, refinements, optionals and DateTimes", () => {
    for (const schema of [Schema.String, Schema.Int, Schema.Literal("a", "b"), Schema.NullOr(Schema.Number), Schema.DateTimeUtc]) {
      expect(Copy.immutable(schema.ast)).toBe(true)
    }
  })

  it("does not hold for objects, arrays, Dates, classes or unknown values", () => {
    const schemas = [Schema.Array(Schema.String), Schema.Struct({ a: Schema.String }), Schema.Date, Schema.DateFromSelf, Product, Schema.Unknown]
    for (const schema of schemas) expect(Copy.immutable(schema.ast)).toBe(false)
  })
})

describe("Copy.hasConstructorDefaults", () => {
  it("tells a struct whose make fills in a field", () => {
    expect(Copy.hasConstructorDefaults({ a: Schema.String, b: Schema.optional(Schema.Int) })).toBe(false)
    expect(Copy.hasConstructorDefaults({ a: Schema.optionalWith(Schema.Int, { default: () => 1 }) })).toBe(true)
    const b = Schema.Int.pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1))
    expect(Copy.hasConstructorDefaults({ a: Schema.String, b })).toBe(true)
  })
})

describe("Copy.copier", () => {
  it("hands over an instance of a class of immutable fields, after checking its fields", () => {
    const copy = Copy.copier(Product, { share: true })
    expect(right(copy(product))).toBe(product)
    const broken = new Product({ ...product, priceCents: -5 }, true)
    expect(Either.isLeft(copy(broken))).toBe(true)
  })

  it("builds a new instance when sharing is off (errors)", () => {
    const copy = Copy.copier(Product, { share: false })
    const copied = right(copy(product)) as Product
    expect(copied).toBeInstanceOf(Product)
    expect(copied).not.toBe(product)
    expect(copied).toEqual(product)
    const error = new Gone({ id: "x" })
    const copiedError = right(Copy.copier(Gone, { share: false })(error))
    expect(copiedError).toBeInstanceOf(Gone)
    expect(copiedError).not.toBe(error)
  })

  it("rebuilds a class holding an array, and its array", () => {
    const page = new Page({ items: [product], next: null })
    const copied = right(Copy.copier(Page, { share: true })(page)) as Page
    expect(copied).toBeInstanceOf(Page)
    expect(copied).not.toBe(page)
    expect(copied.items).not.toBe(page.items)
    expect(copied.items[0]).toBeInstanceOf(Product)
    expect(copied).toEqual(page)
  })

  it("makes an instance of a plain value that fits the class", () => {
    const copied = right(Copy.copier(Product, { share: true })({ ...product }))
    expect(copied).toBeInstanceOf(Product)
    expect(copied).toEqual(product)
  })

  it("copies plain structures afresh", () => {
    const schema = Schema.Struct({ tags: Schema.Array(Schema.String), size: Schema.Struct({ w: Schema.Int }) })
    const value = { tags: ["a"], size: { w: 1 } }
    const copied = right(Copy.copier(schema, { share: true })(value)) as typeof value
    expect(copied).toEqual(value)
    expect(copied.tags).not.toBe(value.tags)
    expect(copied.size).not.toBe(value.size)
  })
})
