/**
 * PLACEHOLDER (h/orders): the shipping contract as the brief's seam names it, so that orders
 * builds before h/shipping is merged. Replaced by h/shipping's file on merge.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ModuleClient } from "../../runtime/Module.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

export const ShippingAddress = Schema.Struct({
  name: Text.line({ maxLength: 200 }),
  line1: Text.line({ maxLength: 200 }),
  city: Text.line({ maxLength: 100 }),
  postalCode: Text.line({ maxLength: 20 }),
  country: Text.code(/^[A-Z]{2}$/, "a country is an ISO 3166 alpha-2 code such as DE")
})
export type ShippingAddress = typeof ShippingAddress.Type

export class Shipment extends Schema.Class<Shipment>("shipping/Shipment")({
  orderId: Schema.String,
  customerId: Schema.String,
  trackingNumber: Schema.String,
  status: Schema.Literal("created", "shipped", "cancelled"),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

export class ShipmentAlreadyShipped extends Schema.TaggedError<ShipmentAlreadyShipped>()(
  "ShipmentAlreadyShipped",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class ShipmentNotFound extends Schema.TaggedError<ShipmentNotFound>()(
  "ShipmentNotFound",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class ShippingRpcs extends RpcGroup.make(
  Rpc.make("create", {
    payload: { orderId: Schema.String, customerId: Schema.String, address: ShippingAddress },
    success: Shipment,
    error: Schema.Union(Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  Rpc.make("cancel", {
    payload: { orderId: Schema.String },
    success: Shipment,
    error: Schema.Union(ShipmentAlreadyShipped, ShipmentNotFound, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  Rpc.make("byOrder", {
    payload: { orderId: Schema.String },
    success: Shipment,
    error: Schema.Union(ShipmentNotFound, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true)
) {}

export class ShippingClient extends ModuleClient("shipping", ShippingRpcs)<ShippingClient>() {}
