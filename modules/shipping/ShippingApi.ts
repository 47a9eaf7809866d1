/**
 * The shipping contract: the shipment of an order, with its tracking number, created on hold
 * once the order is paid, released when the order is confirmed, and cancelled when the order is
 * (the order saga's steps and compensation). Only a released shipment can ship. Every call names
 * the order; each may be repeated harmlessly.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ModuleClient } from "../../runtime/Module.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Forbidden, Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

/** An order's or a customer's id as shipping records it (shipping does not look into either). */
export const Reference = Text.code(/^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/, "an id is 1-128 letters, digits, ':', '.', '_' or '-'")

/** The officially assigned ISO 3166-1 alpha-2 codes (249). */
const COUNTRIES: ReadonlySet<string> = new Set(
  ("AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS " +
    "BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE " +
    "EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM " +
    "HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC " +
    "LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA " +
    "NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
    "SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO " +
    "TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW").split(" ")
)

/** A country: an ISO 3166-1 alpha-2 code such as `DE`, in capitals. */
export const Country = Text.code(/^[A-Z]{2}$/, "a country is an ISO 3166-1 alpha-2 code such as DE").pipe(
  Schema.filter((code) => COUNTRIES.has(code), {
    message: () => "a country is an ISO 3166-1 alpha-2 code such as DE"
  })
)

/** Where an order goes: one line of text each, and the country's code. */
export const ShippingAddress = Schema.Struct({
  name: Text.line({ maxLength: 200 }),
  line1: Text.line({ maxLength: 200 }),
  city: Text.line({ maxLength: 100 }),
  postalCode: Text.line({ maxLength: 20 }),
  country: Country
}).annotations({
  identifier: "ShippingAddress",
  // Said instead of quoting what was sent (a deep value would be walked to format it).
  message: () => "expected an object with name, line1, city, postalCode and country"
})
export type ShippingAddress = typeof ShippingAddress.Type

/**
 * `on_hold` from its creation until its order is confirmed (`release`), then `ready` to ship;
 * `shipped` (only from `ready`) and `cancelled` (from either) are final.
 */
export const ShipmentStatus = Schema.Literal("on_hold", "ready", "shipped", "cancelled")
export type ShipmentStatus = typeof ShipmentStatus.Type

/** An order's shipment. `trackingNumber` is unique across shipments: `TS` and 16 letters or digits. */
export class Shipment extends Schema.Class<Shipment>("shipping/Shipment")({
  orderId: Schema.String,
  customerId: Schema.String,
  trackingNumber: Schema.String,
  status: ShipmentStatus,
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

/** The order has no shipment (or none the caller may see). */
export class ShipmentNotFound extends Schema.TaggedError<ShipmentNotFound>()(
  "ShipmentNotFound",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `order ${this.orderId} has no shipment`
  }
}

/** The shipment has left: it can no longer be cancelled. */
export class ShipmentAlreadyShipped extends Schema.TaggedError<ShipmentAlreadyShipped>()(
  "ShipmentAlreadyShipped",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `the shipment of order ${this.orderId} has shipped and cannot be cancelled`
  }
}

/** The shipment was cancelled: it can no longer ship. */
export class ShipmentCancelled extends Schema.TaggedError<ShipmentCancelled>()(
  "ShipmentCancelled",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `the shipment of order ${this.orderId} was cancelled`
  }
}

/** The shipment is on hold until its order is confirmed: it cannot ship yet. */
export class ShipmentOnHold extends Schema.TaggedError<ShipmentOnHold>()(
  "ShipmentOnHold",
  { orderId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `the shipment of order ${this.orderId} is on hold until the order is confirmed, and cannot ship yet`
  }
}

export class ShippingRpcs extends RpcGroup.make(
  /**
   * The orders module or an admin: creates the order's shipment, on hold, with a new tracking
   * number. Idempotent by `orderId`: the same order again answers its shipment as it is (first
   * call's customer and address; `cancelled` if it was cancelled, even before it was created).
   */
  Rpc.make("create", {
    payload: { orderId: Reference, customerId: Reference, address: ShippingAddress },
    success: Shipment,
    error: Schema.Union(Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * The orders module or an admin: cancels the order's shipment unless it has shipped.
   * Idempotent. An order with no shipment answers ShipmentNotFound and stays without one: a
   * `create` arriving after it answers a cancelled shipment.
   */
  Rpc.make("cancel", {
    payload: { orderId: Reference },
    success: Shipment,
    error: Schema.Union(ShipmentAlreadyShipped, ShipmentNotFound, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * The orders module or an admin: releases the order's shipment once the order is confirmed
   * (`on_hold` becomes `ready`). Idempotent: a released or shipped one answers as it is; a
   * cancelled one is ShipmentCancelled.
   */
  Rpc.make("release", {
    payload: { orderId: Reference },
    success: Shipment,
    error: Schema.Union(ShipmentNotFound, ShipmentCancelled, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * Admin: records that the shipment has left (the warehouse's word). Only a released one:
   * one on hold is ShipmentOnHold. Idempotent.
   */
  Rpc.make("markShipped", {
    payload: { orderId: Reference },
    success: Shipment,
    error: Schema.Union(ShipmentNotFound, ShipmentCancelled, ShipmentOnHold, Unauthenticated, Forbidden)
  }).annotate(Idempotent, true),
  /**
   * The order's shipment, for an admin, the orders module, or the customer it is for; anyone
   * else gets ShipmentNotFound, as for an order without one.
   */
  Rpc.make("byOrder", {
    payload: { orderId: Reference },
    success: Shipment,
    error: Schema.Union(ShipmentNotFound, Unauthenticated)
  }).annotate(Idempotent, true)
) {}

/** Calls shipping, wherever it runs. */
export class ShippingClient extends ModuleClient("shipping", ShippingRpcs)<ShippingClient>() {}
