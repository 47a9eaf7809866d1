/** Inventory's public REST routes, implemented by calling its client: they work wherever it runs. */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Effect, Schema } from "effect"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import * as Problem from "../../runtime/gateway/Problem.ts"
import { ProductId, ProductNotFound } from "../catalog/index.ts"
import { InventoryClient, Quantity, Stock, StockLimitExceeded } from "./InventoryApi.ts"

const productPath = HttpApiSchema.param("id", ProductId)

export class StockHttp extends HttpApiGroup.make("stock")
  .add(
    HttpApiEndpoint.post("restock")`/products/${productPath}/stock`
      .setPayload(Problem.payload(Schema.Struct({ quantity: Quantity })))
      .addSuccess(Stock)
      .addError(Problem.schema(ProductNotFound))
      .addError(Problem.schema(StockLimitExceeded))
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
        .handle("restock", ({ path, payload }) =>
          Gateway.orUnavailable(inventory.restock({ productId: path.id, quantity: payload.quantity })))
        .handle("get", ({ path }) => Gateway.orUnavailable(inventory.get({ productId: path.id })))
    })
)
