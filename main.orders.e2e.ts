/**
 * The order flow end to end, as a suite any deployment runs (`suite(name, start)`): customers and
 * an admin over the gateway's REST API, every answer checked against the OpenAPI document, and the
 * payment provider simulator's ledger and behaviour over its own HTTP API. main.orders.test.ts
 * runs it against processes in five topologies; main.containers.alone.test.ts against the
 * per-module compose topology in containers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import * as Shop from "./runtime/testing/Shop.ts"

export const ADMIN = { email: "admin@tessera.test", password: "admin-password-orders" }

/** What every process of a deployment the suite runs against is given. */
export const settings = {
  TESSERA_SERVICE_SECRET: "orders-e2e-service-secret-orders-e2e",
  TESSERA_ADMIN_EMAIL: ADMIN.email,
  TESSERA_ADMIN_PASSWORD: ADMIN.password,
  TESSERA_PASSWORD_HASH_COST: "10",
  TESSERA_RATE_LIMIT: "100000",
  TESSERA_TRUSTED_PROXIES: "1",
  // The provider outage test waits out the payment provider's open breaker once: 2 s, not 5.
  TESSERA_PAYMENT_PROVIDER_BREAKER_OPEN_FOR: "2 seconds"
}

const gatewayFetch = OpenApiConformance.checkedFetch()

export interface Deployment {
  readonly gateway: string
  /** The payment provider simulator's base URL. */
  readonly provider: string
  /** The admin the deployment was started with (`settings`' when not given). */
  readonly admin?: { readonly email: string; readonly password: string }
  /** What to stop once the suite is done, before `cleanup`. */
  readonly servers: ReadonlyArray<{ readonly stop: () => Promise<unknown> }>
  /** Whether the process answering the gateway hosts payments (its admin view shows the provider's breaker). */
  readonly hostsPayments: boolean
  readonly cleanup: () => Promise<void>
}

const someAddress = () => `198.51.100.${Math.floor(Math.random() * 254) + 1}`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const suite = (name: string, start: () => Promise<Deployment>) =>
describe(name, () => {
  let deployment: Deployment
  let admin: string

  const api = async (route: string, init: { method?: string; json?: unknown; as?: string | null; headers?: Record<string, string> } = {}) => {
    const headers = new Headers(init.headers)
    const who = init.as === undefined ? admin : init.as
    if (who !== null) headers.set("authorization", `Bearer ${who}`)
    headers.set("x-forwarded-for", someAddress())
    if (init.json !== undefined) headers.set("content-type", "application/json")
    const response = await gatewayFetch(`${deployment.gateway}${route}`, {
      method: init.method ?? (init.json !== undefined ? "POST" : "GET"),
      headers,
      ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {})
    })
    return { status: response.status, body: await response.json() as any }
  }

  const login = async (credentials: { email: string; password: string }) => {
    const answer = await api("/v1/auth/login", { as: null, json: credentials })
    expect(answer.status).toBe(200)
    return answer.body.accessToken as string
  }

  const customer = async () => {
    const credentials = { email: `c-${crypto.randomUUID()}@tessera.test`, password: "a good password" }
    expect((await api("/v1/auth/register", { as: null, json: { ...credentials, name: "Cleo" } })).status).toBe(201)
    return login(credentials)
  }

  const product = async (units: number, priceCents = 1250, currency = "EUR") => {
    const made = await api("/v1/products", { json: { sku: `SKU-${crypto.randomUUID().slice(0, 8)}`, name: "Kettle", priceCents, currency } })
    expect(made.status).toBe(201)
    if (units > 0) expect((await api(`/v1/products/${made.body.id}/stock`, { json: { quantity: units } })).status).toBe(200)
    return made.body.id as string
  }

  const stock = async (productId: string) => {
    const { body } = await api(`/v1/products/${productId}/stock`)
    return { available: body.available, reserved: body.reserved }
  }

  const body = (productId: string, fields: Record<string, unknown> = {}) => ({
    items: [{ productId, quantity: 2 }],
    shippingAddress: { name: "Cleo Vance", line1: "5 Harbour Rd", city: "Hamburg", postalCode: "20095", country: "DE" },
    paymentToken: "tok_ok",
    ...fields
  })

  const place = (token: string, json: unknown, key: string | null = crypto.randomUUID()) =>
    api("/v1/orders", { as: token, json, headers: key === null ? {} : { "idempotency-key": key } })

  /**
   * Places as a client does under load: an answer that says to come back (503, 504) is asked
   * again a second later with the same key, a few times; the last answer.
   */
  const placeAsClient = async (token: string, json: unknown, key = crypto.randomUUID()) => {
    for (let tries = 1;; tries++) {
      const answer = await place(token, json, key)
      if ((answer.status !== 503 && answer.status !== 504) || tries === 5) return answer
      await sleep(1_000)
    }
  }

  const settled = async (token: string, id: string, until = (o: any) => o.status !== "PENDING", polls = 300) => {
    for (let i = 0; i < polls; i++) {
      const { body } = await api(`/v1/orders/${id}`, { as: token })
      if (until(body)) return body
      await sleep(50)
    }
    throw new Error(`order ${id} did not settle`)
  }

  /** The customer's notifications once there are `count` (GET /v1/me/notifications). */
  const notified = async (token: string, count: number) => {
    for (let i = 0; i < 300; i++) {
      const { body, status } = await api("/v1/me/notifications", { as: token })
      expect(status).toBe(200)
      if (body.items.length >= count) return body.items
      await sleep(50)
    }
    throw new Error(`no ${count} notifications`)
  }

  beforeAll(async () => {
    deployment = await start()
    admin = await login(deployment.admin ?? ADMIN)
  }, 180_000)

  afterAll(async () => {
    for (const server of deployment?.servers ?? []) await server.stop()
    await deployment?.cleanup()
  })

  it("confirms an order paid with tok_ok: 202 PENDING, then CONFIRMED, charged once, shipped with a tracking number", async () => {
    const buyer = await customer()
    const kettle = await product(5, 1250)
    const placed = await place(buyer, body(kettle))
    expect(placed.status).toBe(202)
    expect(placed.body).toMatchObject({ status: "PENDING", totalCents: 2500, currency: "EUR" })
    const done = await settled(buyer, placed.body.id)
    expect(done.status).toBe("CONFIRMED")
    expect(done).not.toHaveProperty("failureReason")
    expect(await stock(kettle)).toEqual({ available: 3, reserved: 0 })
    const payment = await api(`/v1/orders/${placed.body.id}/payment`, { as: buyer })
    expect(payment).toMatchObject({ status: 200, body: { status: "charged", amountCents: 2500, currency: "EUR" } })
    const shipment = await api(`/v1/orders/${placed.body.id}/shipment`, { as: buyer })
    expect(shipment.status).toBe(200)
    // Released when the order was confirmed: free to ship.
    expect(shipment.body.status).toBe("ready")
    expect(shipment.body.trackingNumber).toEqual(expect.any(String))
    // Notifications heard of the shipment and the confirmation (events, wherever it runs): the buyer's, no one else's.
    const told = await notified(buyer, 2)
    expect(told.map((n: any) => [n.kind, n.orderId]).sort()).toEqual([
      ["order_confirmed", placed.body.id],
      ["shipment_created", placed.body.id]
    ])
    expect(told.find((n: any) => n.kind === "shipment_created").body).toContain(shipment.body.trackingNumber)
    expect((await api("/v1/me/notifications", { as: await customer() })).body).toEqual({ items: [], nextCursor: null })
  })

  it("ends an order paid with tok_decline CANCELLED with PAYMENT_DECLINED, its stock released", async () => {
    const buyer = await customer()
    const kettle = await product(5)
    const placed = await place(buyer, body(kettle, { paymentToken: "tok_decline" }))
    expect(await settled(buyer, placed.body.id)).toMatchObject({ status: "CANCELLED", failureReason: "PAYMENT_DECLINED" })
    expect(await stock(kettle)).toEqual({ available: 5, reserved: 0 })
    expect((await api(`/v1/orders/${placed.body.id}/shipment`, { as: buyer })).status).toBe(404)
    const [told] = await notified(buyer, 1)
    expect(told).toMatchObject({ kind: "order_cancelled", orderId: placed.body.id, subject: "Your order was cancelled" })
    expect(told.body).toContain("your payment was declined")
  })

  it("ends an order of more than the stock CANCELLED with OUT_OF_STOCK, nothing charged", async () => {
    const buyer = await customer()
    const kettle = await product(1)
    const placed = await place(buyer, body(kettle))
    expect(await settled(buyer, placed.body.id)).toMatchObject({ status: "CANCELLED", failureReason: "OUT_OF_STOCK" })
    expect(await stock(kettle)).toEqual({ available: 1, reserved: 0 })
    expect((await api(`/v1/orders/${placed.body.id}/payment`, { as: buyer })).status).toBe(404)
  })

  it("cancels a confirmed order for its customer: refunded, stock back, shipment cancelled", async () => {
    const buyer = await customer()
    const kettle = await product(5)
    const placed = await place(buyer, body(kettle))
    await settled(buyer, placed.body.id)
    const asked = await api(`/v1/orders/${placed.body.id}/cancel`, { as: buyer, method: "POST" })
    expect(asked.status).toBe(202)
    const done = await settled(buyer, placed.body.id, (o) => o.status === "CANCELLED")
    expect(done.failureReason).toBe("CANCELLED_BY_CUSTOMER")
    expect((await api(`/v1/orders/${placed.body.id}/payment`, { as: buyer })).body.status).toBe("refunded")
    expect((await api(`/v1/orders/${placed.body.id}/shipment`, { as: buyer })).body.status).toBe("cancelled")
    expect(await stock(kettle)).toEqual({ available: 5, reserved: 0 })
  })

  it("needs an Idempotency-Key: the same key and body answer the same order, another body 422", async () => {
    const buyer = await customer()
    const kettle = await product(10)
    const missing = await place(buyer, body(kettle), null)
    expect(missing.status).toBe(400)
    expect(missing.body.errors.map((e: any) => e.field)).toContain("idempotency-key")
    const key = crypto.randomUUID()
    const first = await place(buyer, body(kettle), key)
    const again = await place(buyer, body(kettle), key)
    expect(again.status).toBe(202)
    expect(again.body.id).toBe(first.body.id)
    const other = await place(buyer, body(kettle, { paymentToken: "tok_decline" }), key)
    expect(other.status).toBe(422)
    expect(other.body.type).toBe("/problems/idempotency-key-reused")
    await settled(buyer, first.body.id)
    expect(await stock(kettle)).toEqual({ available: 8, reserved: 0 })
  })

  it("prices from the catalog, and names the item it refuses", async () => {
    const buyer = await customer()
    const eur = await product(5, 700, "EUR")
    const usd = await product(5, 700, "USD")
    const priced = await place(buyer, body(eur, { items: [{ productId: eur, quantity: 1, priceCents: 1, unitPriceCents: 1 }] }))
    expect(priced.status).toBe(202)
    expect(priced.body.totalCents).toBe(700)
    const mixed = await place(buyer, body(eur, { items: [{ productId: eur, quantity: 1 }, { productId: usd, quantity: 1 }] }))
    expect(mixed).toMatchObject({ status: 422, body: { type: "/problems/order-item-refused", field: "items.1.productId" } })
    const unknown = await place(buyer, body(eur, { items: [{ productId: crypto.randomUUID(), quantity: 1 }] }))
    expect(unknown).toMatchObject({ status: 422, body: { field: "items.0.productId" } })
    const zero = await place(buyer, body(eur, { items: [{ productId: eur, quantity: 0 }] }))
    expect(zero.status).toBe(400)
    expect(zero.body.errors.map((e: any) => e.field)).toEqual(["items.0.quantity"])
  })

  it("shows an order to its owner and admins only, lists a customer's own, sagas to admins", async () => {
    const buyer = await customer()
    const stranger = await customer()
    const kettle = await product(5)
    const placed = await place(buyer, body(kettle))
    await settled(buyer, placed.body.id)
    for (const route of ["", "/payment", "/shipment"]) {
      expect((await api(`/v1/orders/${placed.body.id}${route}`, { as: stranger })).status).toBe(404)
    }
    expect((await api(`/v1/orders/${placed.body.id}/cancel`, { as: stranger, method: "POST" })).status).toBe(404)
    expect((await api(`/v1/orders/${placed.body.id}`, { as: null })).status).toBe(401)
    expect((await api(`/v1/orders/${placed.body.id}`)).body.id).toBe(placed.body.id)
    expect((await api("/v1/orders", { as: stranger })).body.items).toEqual([])
    expect((await api("/v1/orders", { as: buyer })).body.items.map((o: any) => o.id)).toEqual([placed.body.id])
    const confirmed = await api("/v1/orders?status=CONFIRMED&limit=100")
    expect(confirmed.body.items.every((o: any) => o.status === "CONFIRMED")).toBe(true)
    expect((await api("/v1/admin/sagas", { as: buyer })).status).toBe(403)
    const saga = await Shop.eventually("its PlaceOrder saga completed", async () => {
      const sagas = await api("/v1/admin/sagas?state=completed&limit=100")
      expect(sagas.status).toBe(200)
      return sagas.body.items.find((s: any) => s.subject === placed.body.id && s.workflow === "orders/PlaceOrder")
    })
    expect(saga.steps.filter((s: any) => s.status === "succeeded").map((s: any) => s.step)).toEqual([
      "reserve-stock",
      "charge",
      "create-shipment",
      "confirm"
    ])
    expect((await api("/v1/orders?cursor=not-a-cursor")).status).toBe(400)
  })

  it("confirms an order whose charge the provider made but never answered (tok_ambiguous): one charge", async () => {
    const buyer = await customer()
    const kettle = await product(5, 990)
    const placed = await place(buyer, body(kettle, { paymentToken: "tok_ambiguous" }))
    expect((await settled(buyer, placed.body.id)).status).toBe("CONFIRMED")
    const ledger = await (await fetch(`${deployment.provider}/admin/ledger`)).json() as { charges: Array<any>; refunds: Array<any> }
    const charges = ledger.charges.filter((c) => c.reference === `order-${placed.body.id}`)
    expect(charges).toHaveLength(1)
    expect(charges[0]).toMatchObject({ status: "succeeded", amountCents: 1980, refunded: false })
  })

  it("with the payment provider failing, ends new orders CANCELLED with PAYMENT_UNAVAILABLE, stock released; once it recovers, confirms again", async () => {
    const buyer = await customer()
    const kettle = await product(20)
    const behave = async (behaviour: { errorRate: number }) => {
      const answer = await fetch(`${deployment.provider}/admin/behaviour`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(behaviour)
      })
      expect(answer.status).toBe(200)
    }
    const oneUnit = body(kettle, { items: [{ productId: kettle, quantity: 1 }] })
    const timesToCancelled: Array<number> = []
    await behave({ errorRate: 1 })
    try {
      // Enough orders one after another for the breaker to open (10 calls in its window, its
      // charges tried up to 3 times): the last ones are refused by it, not by the provider.
      for (let i = 0; i < 6; i++) {
        const started = Date.now()
        const placed = await place(buyer, oneUnit)
        expect(placed.status).toBe(202)
        // Answered at all within a generous bound (a minute), never left PENDING.
        const done = await settled(buyer, placed.body.id, undefined, 1200)
        timesToCancelled.push(Date.now() - started)
        expect(done).toMatchObject({ status: "CANCELLED", failureReason: "PAYMENT_UNAVAILABLE" })
        expect((await api(`/v1/orders/${placed.body.id}/shipment`, { as: buyer })).status).toBe(404)
      }
      // The process answering the gateway shows the provider's breaker when it hosts payments:
      // open (or, on a slow machine, its open period just past, half-open until a probe).
      const resilience = await api("/v1/admin/resilience")
      expect(resilience.status).toBe(200)
      const breaker = resilience.body.dependencies.find((d: any) => d.target === "payment-provider")?.breaker
      if (deployment.hostsPayments) expect(["Open", "HalfOpen"]).toContain(breaker?.state)
      else expect(breaker).toBeUndefined()
      console.log(`${name}: POST /v1/orders to CANCELLED with the provider failing, ms: ${timesToCancelled.join(", ")}`)
      expect(await stock(kettle)).toEqual({ available: 20, reserved: 0 })
    } finally {
      await behave({ errorRate: 0 })
    }
    // Recovered: within the breaker's open period (2 s) and a probe, orders confirm again, no restart.
    let confirmed: any
    const recovering = Date.now()
    while (confirmed === undefined && Date.now() - recovering < 60_000) {
      const placed = await place(buyer, oneUnit)
      const done = await settled(buyer, placed.body.id, undefined, 1200)
      if (done.status === "CONFIRMED") confirmed = done
      else expect(done).toMatchObject({ status: "CANCELLED", failureReason: "PAYMENT_UNAVAILABLE" })
    }
    console.log(`${name}: orders confirmed again ${Date.now() - recovering} ms after the provider recovered`)
    expect(confirmed?.status).toBe("CONFIRMED")
    expect(await stock(kettle)).toEqual({ available: 19, reserved: 0 })
  }, 180_000)

  it("confirms exactly as many of 50 concurrent one-unit orders as there are units (10), the rest OUT_OF_STOCK", async () => {
    const kettle = await product(10)
    const buyers = await Promise.all(Array.from({ length: 5 }, () => customer()))
    const placed = await Promise.all(
      Array.from({ length: 50 }, (_, i) => placeAsClient(buyers[i % 5]!, body(kettle, { items: [{ productId: kettle, quantity: 1 }] })))
    )
    expect(placed.map((p) => p.status)).toEqual(Array(50).fill(202))
    const done = await Promise.all(placed.map((p, i) => settled(buyers[i % 5]!, p.body.id)))
    const counts: Record<string, number> = {}
    for (const order of done) counts[order.failureReason ?? order.status] = (counts[order.failureReason ?? order.status] ?? 0) + 1
    expect(counts).toEqual({ CONFIRMED: 10, OUT_OF_STOCK: 40 })
    expect(await stock(kettle)).toEqual({ available: 0, reserved: 0 })
  }, 120_000)
})
