/** The catalog's public REST routes, implemented by calling its client: they work wherever it runs. */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiError, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Duration, Effect, Schema } from "effect"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import * as Problem from "../../runtime/gateway/Problem.ts"
import * as LastGood from "../../runtime/resilience/LastGood.ts"
import * as Setting from "../../runtime/Setting.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { CatalogClient, CursorInvalid, NewProduct, Product, ProductId, ProductNotFound, ProductPage, SkuTaken } from "./CatalogApi.ts"

const allErrors = { parseOptions: { errors: "all" } } as const

/** A page size: decimal digits on the wire, described as the integer they spell. */
const Limit = Integer.pageSize

/** Query of `GET /v1/products`. */
const ProductSearch = Schema.Struct({
  q: Schema.optionalWith(Text.query({ maxLength: 200 }), { exact: true }),
  limit: Schema.optionalWith(Limit, { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 200 }), { exact: true })
}).annotations(allErrors)

/** How long a product read may answer its last good value while the catalog cannot answer. */
export const staleFor = Setting.duration({
  name: "TESSERA_CATALOG_STALE_FOR",
  description: "how long product reads may answer their last good value while catalog is unreachable (0: never)",
  default: "30 seconds",
  min: Duration.zero,
  exclusiveMin: false
})

const STALE_NOTE = "Public. While the catalog cannot answer, the last good answer of the same request may be served " +
  "for up to TESSERA_CATALOG_STALE_FOR (30 s by default), marked by the header `Tessera-Stale: <age in seconds>`."

/** The 200 answer of a product read may carry `Tessera-Stale` (the document says so). */
const describeStale = (operation: Record<string, any>) => {
  const ok = operation.responses?.["200"]
  if (ok) {
    ok.headers = {
      ...ok.headers,
      "Tessera-Stale": {
        description: "Present when the answer is the last good one, served while the catalog cannot answer: its age in seconds",
        required: false,
        schema: { type: "integer", minimum: 0 }
      }
    }
  }
  return operation
}

/** Product reads (and pages) kept for that: about 1000 small ones, at most a few MB. */
const LAST_GOOD_CAPACITY = 1000

export class ProductsHttp extends HttpApiGroup.make("products")
  .add(
    HttpApiEndpoint.post("create", "/products")
      .setPayload(Problem.payload(NewProduct))
      .addSuccess(Product, { status: 201 })
      .addError(Problem.schema(SkuTaken))
      .middleware(Auth.AdminOnly)
      .annotate(OpenApi.Summary, "Create a product; its SKU must be new (admin)")
  )
  .add(
    HttpApiEndpoint.get("list", "/products")
      .setUrlParams(ProductSearch)
      .addSuccess(ProductPage)
      .annotate(OpenApi.Summary, "Search products by text, a page at a time (follow nextCursor)")
      .annotate(OpenApi.Description, STALE_NOTE)
      .annotate(OpenApi.Transform, describeStale)
  )
  .add(
    HttpApiEndpoint.get("get")`/products/${HttpApiSchema.param("id", ProductId)}`
      .addSuccess(Product)
      .addError(Problem.schema(ProductNotFound))
      .annotate(OpenApi.Summary, "Read one product")
      .annotate(OpenApi.Description, STALE_NOTE)
      .annotate(OpenApi.Transform, describeStale)
  )
  .prefix("/v1")
{}

/** A cursor this API did not hand out is a bad query parameter: a validation problem naming it. */
const invalidCursor = (error: CursorInvalid) =>
  Effect.fail(
    new HttpApiError.HttpApiDecodeError({
      issues: [{ _tag: "Type", path: ["cursor"], message: error.message }],
      message: `cursor: ${error.message}`
    })
  )

export const ProductsHttpLive = HttpApiBuilder.group(
  HttpApi.make(Gateway.API_ID).add(ProductsHttp),
  "products",
  (handlers) =>
    Effect.gen(function*() {
      const catalog = yield* CatalogClient
      // Checked with every setting at start (Setting.check): a bad value never gets this far.
      const lastGood = LastGood.make({ maxAge: yield* Effect.orDie(staleFor.config), capacity: LAST_GOOD_CAPACITY })
      return handlers
        .handle("create", ({ payload }) => Gateway.orUnavailable(catalog.create(payload)))
        .handle("list", ({ urlParams }) =>
          Gateway.orUnavailable(lastGood.serve(`list ${JSON.stringify(urlParams)}`, catalog.list(urlParams))).pipe(
            Effect.catchTag("CursorInvalid", invalidCursor)
          ))
        .handle("get", ({ path }) => Gateway.orUnavailable(lastGood.serve(`get ${path.id}`, catalog.get({ id: path.id }))))
    })
)
