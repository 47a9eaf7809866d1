/**
 * A bench-only module: one rpc, `echo.get`, that answers a small product-shaped value built from
 * the request's id. It keeps no data and touches no database, so the bench measures the call
 * path (client, transport, server, Schema) and nothing behind it.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { Effect, Schema } from "effect"
import * as Module from "../runtime/Module.ts"

/** What `get` returns: shaped like a catalog product, small enough to be all overhead. */
export class EchoProduct extends Schema.Class<EchoProduct>("echo/Product")({
  id: Schema.String,
  sku: Schema.String,
  name: Schema.String,
  priceCents: Schema.Int,
  currency: Schema.String
}) {}

export class EchoRpcs extends RpcGroup.make(
  Rpc.make("get", { payload: { id: Schema.String }, success: EchoProduct })
) {}

export class EchoClient extends Module.ModuleClient("echo", EchoRpcs)<EchoClient>() {}

/** The handler itself: the in-process ceiling calls exactly this function. */
export const get = ({ id }: { readonly id: string }) =>
  Effect.succeed(new EchoProduct({ id, sku: "BENCH-1", name: "Bench product", priceCents: 1999, currency: "EUR" }))

/** The same value as the wire carries it (the bare HTTP ceiling answers this JSON). */
export const encoded = (id: string) => ({ id, sku: "BENCH-1", name: "Bench product", priceCents: 1999, currency: "EUR" })

export const EchoHandlers = EchoRpcs.toLayer({ get })

export const EchoModule = Module.make({ client: EchoClient, handlers: EchoHandlers, database: false })
