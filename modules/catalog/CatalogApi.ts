/**
 * The catalog contract: what a product is, and the calls that create, read and search products.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ModuleClient } from "../../runtime/Module.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

/** A product's id: a UUID. */
export const ProductId = Text.uuid.pipe(Schema.brand("ProductId"))
export type ProductId = typeof ProductId.Type

/** Stock-keeping unit: unique across the catalog, letters, digits, `.`, `_`, `-`. */
export const Sku = Text.code(
  /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  "a SKU is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
).pipe(Schema.brand("Sku"))
export type Sku = typeof Sku.Type

const currencies: ReadonlySet<string> = new Set(Intl.supportedValuesOf("currency"))

/** An ISO 4217 currency code such as `EUR`. */
export const Currency = Text.string.pipe(
  Schema.filter((code) => currencies.has(code), {
    message: () => "expected an ISO 4217 currency code such as EUR or USD"
  }),
  Schema.brand("Currency")
)
export type Currency = typeof Currency.Type

/** A price in the currency's minor unit (cents): a positive integer that fits in 32 bits. */
export const PriceCents = Integer.between(1, 2_147_483_647)

/** A product's name: one line of text (runtime/schema/Text.ts). */
const Name = Text.line({ maxLength: 200 })
/** A product's description: text of several lines, possibly empty. */
const Description = Text.multiline({ maxLength: 4000 })

/**
 * As stored: products created before the text rules keep their name and description as they
 * were, so what the catalog answers is checked only for length.
 */
const StoredName = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))
const StoredDescription = Schema.String.pipe(Schema.maxLength(4000))

/** A product as the catalog stores it. */
export class Product extends Schema.Class<Product>("catalog/Product")({
  id: ProductId,
  sku: Sku,
  name: StoredName,
  description: StoredDescription,
  priceCents: PriceCents,
  currency: Currency,
  createdAt: Schema.DateTimeUtc
}) {}

/** What it takes to create a product. */
export const NewProduct = Schema.Struct({
  sku: Sku,
  name: Name,
  description: Schema.optionalWith(Description, { exact: true }),
  priceCents: PriceCents,
  currency: Currency
})
export type NewProduct = typeof NewProduct.Type

/** A search: text matched against SKU, name and description; keyset paging by `cursor`. */
export const ProductQuery = Schema.Struct({
  q: Schema.optionalWith(Text.query({ maxLength: 200 }), { exact: true }),
  limit: Schema.optionalWith(Integer.between(1, 100), { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 200 }), { exact: true })
})
export type ProductQuery = typeof ProductQuery.Type

/** One page of products, oldest first; `nextCursor` is null on the last page. */
export class ProductPage extends Schema.Class<ProductPage>("catalog/ProductPage")({
  items: Schema.Array(Product),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

/** No product has this id. */
export class ProductNotFound extends Schema.TaggedError<ProductNotFound>()(
  "ProductNotFound",
  { productId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no product has id ${this.productId}`
  }
}

/** Another product already has this SKU. */
export class SkuTaken extends Schema.TaggedError<SkuTaken>()(
  "SkuTaken",
  { sku: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `a product with SKU ${this.sku} already exists`
  }
}

/** The paging cursor was not one this API handed out (quoted up to Text.MAX_QUOTE characters). */
export class CursorInvalid extends Schema.TaggedError<CursorInvalid>()(
  "CursorInvalid",
  { cursor: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return "the cursor is not one this API returned"
  }
}

export class CatalogRpcs extends RpcGroup.make(
  /** Admin: creates a product; its SKU must be new. */
  Rpc.make("create", { payload: NewProduct, success: Product, error: Schema.Union(SkuTaken, Unauthenticated, Forbidden) }),
  /** Reads one product. */
  Rpc.make("get", { payload: { id: ProductId }, success: Product, error: ProductNotFound }).annotate(Idempotent, true),
  /** Searches products, one page at a time. */
  Rpc.make("list", { payload: ProductQuery, success: ProductPage, error: CursorInvalid }).annotate(Idempotent, true)
) {}

/** Calls the catalog, wherever it runs. */
export class CatalogClient extends ModuleClient("catalog", CatalogRpcs)<CatalogClient>() {}
