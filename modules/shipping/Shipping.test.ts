/**
 * Shipping through its public client: in process on PostgreSQL and on embedded PostgreSQL, and
 * over the wire (a server hosting shipping, called with the service credential) on one of them.
 * The same cases run on each.
 */
import { HttpApiSchema } from "@effect/platform"
import { Effect, Either, Exit, Layer, Redacted, Schema, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../../runtime/security/Caller.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import * as TestServer from "../../runtime/testing/TestServer.ts"
import * as RemoteClient from "../../runtime/transport/RemoteClient.ts"
import * as TrackingNumber from "./internal/TrackingNumber.ts"
import {
  Shipment,
  ShipmentAlreadyShipped,
  ShipmentCancelled,
  ShipmentNotFound,
  ShipmentOnHold,
  ShippingAddress,
  ShippingClient,
  ShippingRpcs
} from "./ShippingApi.ts"
import { ShippingModule } from "./ShippingModule.ts"

const address = { name: "Ada Lovelace", line1: "12 St James's Square", city: "London", postalCode: "SW1Y 4JH", country: "GB" }
const ADMIN = TestHost.ADMIN
const ORDERS = Caller.service("orders")
const user = (id: string) => new Caller.Caller({ kind: "user", id, role: "customer" })

type Run = <A, E>(effect: Effect.Effect<A, E, ShippingClient>) => Promise<A>

/** The cases, on `run` (which provides the client; calls carry whatever caller the effect sets). */
const cases = (run: Run) => {
  const as = (caller: Caller.Caller | undefined) =>
  <A, E>(f: (client: ShippingClient["Type"]) => Effect.Effect<A, E>) =>
    run((caller === undefined ? Caller.anonymous : Caller.withCaller(caller))(Effect.flatMap(ShippingClient, f)))
  const failure = (caller: Caller.Caller | undefined) =>
  async <A, E>(f: (client: ShippingClient["Type"]) => Effect.Effect<A, E>) => {
    const result = await as(caller)((c) => Effect.either(f(c)))
    if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
    return result.left
  }
  const orders = as(ORDERS)
  const admin = as(ADMIN)
  const newOrder = () => ({ orderId: crypto.randomUUID(), customerId: crypto.randomUUID() })
  const created = async () => {
    const order = newOrder()
    return { ...order, shipment: await orders((c) => c.create({ ...order, address })) }
  }
  /** A shipment released by the orders module (its order confirmed). */
  const released = async () => {
    const made = await created()
    return { ...made, shipment: await orders((c) => c.release({ orderId: made.orderId })) }
  }

  it("creates a shipment on hold with a new tracking number, once per order", async () => {
    const { customerId, orderId, shipment } = await created()
    expect(shipment).toBeInstanceOf(Shipment)
    expect(shipment).toMatchObject({ orderId, customerId, status: "on_hold" })
    expect(shipment.trackingNumber).toMatch(TrackingNumber.FORMAT)
    // Again, even with another address: the order's shipment as it is.
    const again = await orders((c) => c.create({ orderId, customerId, address: { ...address, city: "Paris", country: "FR" } }))
    expect(again).toEqual(shipment)
    const other = await created()
    expect(other.shipment.trackingNumber).not.toBe(shipment.trackingNumber)
  })

  it("answers concurrent creates of one order with one shipment", async () => {
    const order = newOrder()
    const all = await Promise.all(Array.from({ length: 8 }, () => orders((c) => c.create({ ...order, address }))))
    expect(new Set(all.map((s) => s.trackingNumber)).size).toBe(1)
  })

  it("cancels a shipment on hold, and again; and one released", async () => {
    const { orderId, shipment } = await created()
    const cancelled = await orders((c) => c.cancel({ orderId }))
    expect(cancelled).toMatchObject({ orderId, status: "cancelled", trackingNumber: shipment.trackingNumber })
    expect(await orders((c) => c.cancel({ orderId }))).toEqual(cancelled)
    expect(await admin((c) => c.byOrder({ orderId }))).toEqual(cancelled)
    // A create after the cancellation does not bring it back, nor does a release.
    expect((await orders((c) => c.create({ orderId, customerId: shipment.customerId, address }))).status).toBe("cancelled")
    expect(await failure(ORDERS)((c) => c.release({ orderId }))).toBeInstanceOf(ShipmentCancelled)

    const ready = await released()
    expect((await orders((c) => c.cancel({ orderId: ready.orderId }))).status).toBe("cancelled")
  })

  it("ships only a released shipment: one on hold is refused with 409 ShipmentOnHold and stays on hold", async () => {
    const { orderId, shipment } = await created()
    const held = await failure(ADMIN)((c) => c.markShipped({ orderId }))
    expect(held).toEqual(new ShipmentOnHold({ orderId }))
    expect(held).toBeInstanceOf(ShipmentOnHold)
    expect(HttpApiSchema.getStatusError(ShipmentOnHold)).toBe(409)
    expect((held as ShipmentOnHold).message).toContain("on hold until the order is confirmed")
    expect(await admin((c) => c.byOrder({ orderId }))).toEqual(shipment)
    const ready = await orders((c) => c.release({ orderId }))
    expect(ready).toMatchObject({ orderId, status: "ready", trackingNumber: shipment.trackingNumber })
    // Released again (a saga's step run twice): the same answer.
    expect(await orders((c) => c.release({ orderId }))).toEqual(ready)
    const shipped = await admin((c) => c.markShipped({ orderId }))
    expect(shipped.status).toBe("shipped")
    expect((await orders((c) => c.release({ orderId }))).status).toBe("shipped")
    expect(await failure(ORDERS)((c) => c.release({ orderId: crypto.randomUUID() }))).toBeInstanceOf(ShipmentNotFound)
  })

  it("refuses to cancel a shipped shipment, and to ship a cancelled one", async () => {
    const { orderId } = await released()
    const shipped = await admin((c) => c.markShipped({ orderId }))
    expect(shipped.status).toBe("shipped")
    expect(await admin((c) => c.markShipped({ orderId }))).toEqual(shipped)
    expect(await failure(ORDERS)((c) => c.cancel({ orderId }))).toBeInstanceOf(ShipmentAlreadyShipped)
    expect(await admin((c) => c.byOrder({ orderId }))).toEqual(shipped)

    const other = await created()
    await orders((c) => c.cancel({ orderId: other.orderId }))
    expect(await failure(ADMIN)((c) => c.markShipped({ orderId: other.orderId }))).toBeInstanceOf(ShipmentCancelled)
    expect((await admin((c) => c.byOrder({ orderId: other.orderId }))).status).toBe("cancelled")
  })

  it("settles a race of cancel and markShipped one way, consistently", async () => {
    const { orderId } = await released()
    const [cancel, ship] = await Promise.all([
      as(ORDERS)((c) => Effect.either(c.cancel({ orderId }))),
      as(ADMIN)((c) => Effect.either(c.markShipped({ orderId })))
    ])
    const final = await admin((c) => c.byOrder({ orderId }))
    if (final.status === "shipped") {
      expect(Either.isRight(ship)).toBe(true)
      expect(Either.isLeft(cancel) && cancel.left).toBeInstanceOf(ShipmentAlreadyShipped)
    } else {
      expect(final.status).toBe("cancelled")
      expect(Either.isRight(cancel)).toBe(true)
      expect(Either.isLeft(ship) && ship.left).toBeInstanceOf(ShipmentCancelled)
    }
  })

  it("cancelling an order without a shipment is not found, and a create arriving later makes none live", async () => {
    const order = newOrder()
    expect(await failure(ORDERS)((c) => c.cancel(order))).toBeInstanceOf(ShipmentNotFound)
    expect(await failure(ADMIN)((c) => c.byOrder(order))).toBeInstanceOf(ShipmentNotFound)
    const late = await orders((c) => c.create({ ...order, address }))
    expect(late).toMatchObject({ ...order, status: "cancelled" })
    expect(late.trackingNumber).toMatch(TrackingNumber.FORMAT)
    expect(await orders((c) => c.cancel(order))).toEqual(late)
    expect(await failure(ADMIN)((c) => c.markShipped(order))).toBeInstanceOf(ShipmentCancelled)
  })

  it("shows a shipment to an admin, the orders module and its customer, and to no one else", async () => {
    const { customerId, orderId, shipment } = await created()
    expect(await admin((c) => c.byOrder({ orderId }))).toEqual(shipment)
    expect(await orders((c) => c.byOrder({ orderId }))).toEqual(shipment)
    expect(await as(user(customerId))((c) => c.byOrder({ orderId }))).toEqual(shipment)
    expect(await failure(user(crypto.randomUUID()))((c) => c.byOrder({ orderId }))).toBeInstanceOf(ShipmentNotFound)
    // The customer's id as another kind of caller is not the customer.
    const key = new Caller.Caller({ kind: "apiKey", id: customerId, role: "customer" })
    expect(await failure(key)((c) => c.byOrder({ orderId }))).toBeInstanceOf(ShipmentNotFound)
    expect(await failure(Caller.service("payments"))((c) => c.byOrder({ orderId }))).toBeInstanceOf(ShipmentNotFound)
    expect(await failure(undefined)((c) => c.byOrder({ orderId }))).toBeInstanceOf(Caller.Unauthenticated)
    expect(await failure(ADMIN)((c) => c.byOrder({ orderId: crypto.randomUUID() }))).toBeInstanceOf(ShipmentNotFound)
  })

  it("lets only the orders module or an admin create, release and cancel, and only an admin mark shipped", async () => {
    const order = newOrder()
    const customer = user(order.customerId)
    expect(await failure(customer)((c) => c.create({ ...order, address }))).toBeInstanceOf(Caller.Forbidden)
    expect(await failure(Caller.service("payments"))((c) => c.create({ ...order, address }))).toBeInstanceOf(Caller.Forbidden)
    expect(await failure(undefined)((c) => c.create({ ...order, address }))).toBeInstanceOf(Caller.Unauthenticated)
    expect(await failure(ADMIN)((c) => c.byOrder(order))).toBeInstanceOf(ShipmentNotFound)

    const byAdmin = await admin((c) => c.create({ ...order, address }))
    expect(byAdmin.status).toBe("on_hold")
    expect(await failure(customer)((c) => c.cancel({ orderId: order.orderId }))).toBeInstanceOf(Caller.Forbidden)
    expect(await failure(customer)((c) => c.release({ orderId: order.orderId }))).toBeInstanceOf(Caller.Forbidden)
    expect(await failure(Caller.service("payments"))((c) => c.release({ orderId: order.orderId }))).toBeInstanceOf(Caller.Forbidden)
    expect(await failure(undefined)((c) => c.release({ orderId: order.orderId }))).toBeInstanceOf(Caller.Unauthenticated)
    expect(await failure(ORDERS)((c) => c.markShipped({ orderId: order.orderId }))).toBeInstanceOf(Caller.Forbidden)
    expect(await failure(customer)((c) => c.markShipped({ orderId: order.orderId }))).toBeInstanceOf(Caller.Forbidden)
    expect(await admin((c) => c.byOrder({ orderId: order.orderId }))).toEqual(byAdmin)
  })
}

describe("a shipping address", () => {
  const decode = Schema.decodeUnknownEither(ShippingAddress)
  it("takes an ISO 3166-1 alpha-2 country, and refuses anything else naming the field", () => {
    expect(Either.isRight(decode(address))).toBe(true)
    for (const country of ["XX", "gb", "GBR", "UK", "EU", "ZZ", "", 44]) {
      const result = decode({ ...address, country })
      expect(Either.isLeft(result), String(country)).toBe(true)
      expect(Either.isLeft(result) && String(result.left)).toMatch(/country/)
    }
  })
  it("refuses an empty or multi-line name", () => {
    expect(Either.isLeft(decode({ ...address, name: "  " }))).toBe(true)
    expect(Either.isLeft(decode({ ...address, line1: "a\nb" }))).toBe(true)
  })
})

TestHost.describeOnDatabases("shipping", (database) => TestHost.layer([ShippingModule], database), (run) => cases(run))

describe("shipping over the wire", () => {
  const SECRET = "a-shipping-over-the-wire-secret-long-enough"
  let server: TestServer.TestServer | undefined
  let scope: Scope.CloseableScope | undefined
  let client: Layer.Layer<ShippingClient> | undefined
  beforeAll(async () => {
    server = await TestServer.startOnTestDatabase([ShippingModule], { TESSERA_SERVICE_SECRET: SECRET })
    scope = await Effect.runPromise(Scope.make())
    const remote = await Effect.runPromise(Scope.extend(
      RemoteClient.make("shipping", ShippingRpcs, server.url, {
        secret: Redacted.make(SECRET),
        caller: "shipping-test"
      }),
      scope
    ))
    client = Layer.succeed(ShippingClient, remote as never)
  })
  afterAll(async () => {
    if (scope) await Effect.runPromise(Scope.close(scope, Exit.void))
    await server?.close()
  })
  cases((effect) => Effect.runPromise(Effect.provide(effect, client!)))
})
