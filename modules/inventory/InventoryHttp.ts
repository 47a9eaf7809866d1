/** Inventory's public REST routes, implemented by calling its client: they work wherever it runs. */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Effect, Schema } from "effect"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import * as Problem from "../../runtime/gateway/Problem.ts"
import { ProductId, ProductNotFound } from "../catalog/index.ts"
import * as Idempotent from "../../runtime/transport/Idempotent.ts"
import { IdempotencyKey, IdempotencyKeyReused, InventoryClient, Quantity, Stock, StockLimitExceeded } from "./InventoryApi.ts"

/**
 * `Idempotency-Key` on a restock: the same key again is answered as the first time and adds
 * nothing, so a client (and the runtime's retry) may repeat the request safely.
 */
const RestockHeaders = Schema.Struct({
  [Idempotent.HEADER]: Schema.optionalWith(
    IdempotencyKey.annotations({
      description: "Makes the restock safe to repeat: the same key again answers the same stock and adds nothing (kept a day)"
    }),
    { exact: true }
  )
})

const productPath = HttpApiSchema.param("id", ProductId)

export class StockHttp extends HttpApiGroup.make("stock")
  .add(
    HttpApiEndpoint.post("restock")`/products/${productPath}/stock`
      .setPayload(Problem.payload(Schema.Struct({ quantity: Quantity })))
      .setHeaders(RestockHeaders)
      .addSuccess(Stock)
      .addError(Problem.schema(ProductNotFound))
      .addError(Problem.schema(StockLimitExceeded))
      .addError(Problem.schema(IdempotencyKeyReused))
      .middleware(Auth.AdminOnly)
      .annotate(OpenApi.Summary, "Add units to a product's available stock (admin)")
  )
  .add(
    HttpApiEndpoint.get("get")`/products/${productPath}/stock`
      .addSuccess(Stock)
      .addError(Problem.schema(ProductNotFound))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "Read a product's stock: available and reserved units")
  )
  .prefix("/v1")
{}

export const StockHttpLive = HttpApiBuilder.group(
  HttpApi.make(Gateway.API_ID).add(StockHttp),
  "stock",
  (handlers) =>
    Effect.gen(function*() {
      const inventory = yield* InventoryClient
      return handlers
        .handle("restock", ({ headers, path, payload }) => {
          const key = headers[Idempotent.HEADER]
          const input = { productId: path.id, quantity: payload.quantity }
          return Gateway.orUnavailable(
            key === undefined ? inventory.restock(input) : inventory.restock(input, { headers: { [Idempotent.HEADER]: key } })
          )
        })
        .handle("get", ({ path }) => Gateway.orUnavailable(inventory.get({ productId: path.id })))
    })
)
