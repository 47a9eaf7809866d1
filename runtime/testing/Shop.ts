/**
 * A shop's customers and admin as end-to-end tests see them: JSON over the public REST API of
 * one or more gateways, asking again (with the same Idempotency-Key) while an answer is a 5xx or
 * no answer, as a client behind a load balancer does, and the invariants every order stream
 * must leave behind.
 */
import { expect } from "vitest"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface Answer {
  readonly status: number
  readonly body: any
}

export interface Request {
  readonly method?: string
  readonly json?: unknown
  readonly token?: string
  readonly key?: string
}

export const ADDRESS = { name: "Shop Test", line1: "1 Test St", city: "Berlin", postalCode: "10115", country: "DE" }

export interface Shop {
  /** One request to the next gateway in turn. */
  readonly api: (route: string, init?: Request) => Promise<Answer>
  /** `api`, asked again on the next gateway while the answer is a 5xx or none. */
  readonly persist: (route: string, init?: Request) => Promise<Answer>
  /** Answers that were a 5xx or none, asked again by `persist`. */
  readonly refused: () => number
}

/** A client of the gateways at `gateways`, taken in turn. */
export const make = (gateways: ReadonlyArray<string>): Shop => {
  let next = 0
  let refused = 0
  const api = async (route: string, init: Request = {}): Promise<Answer> => {
    const headers: Record<string, string> = {}
    if (init.token) headers.authorization = `Bearer ${init.token}`
    if (init.key) headers["idempotency-key"] = init.key
    if (init.json !== undefined) headers["content-type"] = "application/json"
    const gateway = gateways[next++ % gateways.length]!
    const response = await fetch(`${gateway}${route}`, {
      method: init.method ?? (init.json !== undefined ? "POST" : "GET"),
      headers,
      ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {})
    })
    const text = await response.text()
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
  }
  const persist = async (route: string, init: Request = {}): Promise<Answer> => {
    for (let i = 0; i < 600; i++) {
      const answer = await api(route, init).catch(() => ({ status: 599, body: undefined }))
      if (answer.status < 500) return answer
      refused++
      await sleep(100)
    }
    throw new Error(`${route} kept failing`)
  }
  return { api, persist, refused: () => refused }
}

/** Logs in and returns the access token. */
export const login = async (shop: Shop, credentials: { readonly email: string; readonly password: string }) => {
  const answer = await shop.persist("/v1/auth/login", { json: credentials })
  expect(answer.status, JSON.stringify(answer.body)).toBe(200)
  return answer.body.accessToken as string
}

/** Registers a new customer and returns its token. */
export const customer = async (shop: Shop, label: string) => {
  const credentials = { email: `${label}-${crypto.randomUUID()}@tessera.test`, password: "a good password" }
  const registered = await shop.persist("/v1/auth/register", { json: { ...credentials, name: label } })
  expect(registered.status, JSON.stringify(registered.body)).toBe(201)
  return login(shop, credentials)
}

/** Creates a product with `stock` units and returns its id. */
export const product = async (shop: Shop, admin: string, stock: number, priceCents = 300) => {
  const created = await shop.persist("/v1/products", {
    token: admin,
    json: { sku: `SHOP-${crypto.randomUUID()}`, name: "Bolt", priceCents, currency: "EUR" }
  })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  const stocked = await shop.persist(`/v1/products/${created.body.id}/stock`, { token: admin, json: { quantity: stock } })
  expect(stocked.status, JSON.stringify(stocked.body)).toBe(200)
  return created.body.id as string
}

/** Places one order of one unit under `key`, asking again until it is accepted; its id. */
export const place = async (shop: Shop, token: string, productId: string, key: string, paymentToken = "tok_ok") => {
  const answer = await shop.persist("/v1/orders", {
    token,
    key,
    json: { items: [{ productId, quantity: 1 }], shippingAddress: ADDRESS, paymentToken }
  })
  expect(answer.status, JSON.stringify(answer.body)).toBe(202)
  return answer.body.id as string
}

/** Waits until order `id` has ended (not PENDING) and returns it. */
export const ended = async (shop: Shop, token: string, id: string, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { body } = await shop.persist(`/v1/orders/${id}`, { token })
    if (body.status !== "PENDING") return body
    if (Date.now() > deadline) throw new Error(`order ${id} stayed PENDING for ${timeoutMs} ms`)
    await sleep(100)
  }
}

/**
 * What every order stream leaves behind, once each of `final` (the orders as they ended, all of
 * one product of `stocked` units) has ended: each confirmed order sold one unit and nothing stays
 * reserved; the provider's ledger holds exactly one unrefunded charge per confirmed order and
 * none per cancelled one; a live shipment exists exactly for the confirmed orders.
 */
export const expectSettled = async (
  shop: Shop,
  { admin, productId, stocked, final, providerUrl }: {
    readonly admin: string
    readonly productId: string
    readonly stocked: number
    readonly final: ReadonlyArray<any>
    readonly providerUrl: string
  }
) => {
  const confirmed = final.filter((o) => o.status === "CONFIRMED")
  const cancelled = final.filter((o) => o.status === "CANCELLED")
  expect(confirmed.length + cancelled.length).toBe(final.length)

  const stock = (await shop.persist(`/v1/products/${productId}/stock`, { token: admin })).body
  expect({ available: stock.available, reserved: stock.reserved }).toEqual({ available: stocked - confirmed.length, reserved: 0 })

  const ledger = await (await fetch(`${providerUrl}/admin/ledger`)).json() as { charges: Array<any> }
  const live = (id: string) => ledger.charges.filter((c) => c.reference === `order-${id}` && c.status === "succeeded" && !c.refunded)
  for (const order of confirmed) expect(live(order.id), `order ${order.id}`).toHaveLength(1)
  for (const order of cancelled) expect(live(order.id), `order ${order.id}`).toHaveLength(0)

  for (const order of final) {
    const shipment = await shop.persist(`/v1/orders/${order.id}/shipment`, { token: admin })
    const isLive = shipment.status === 200 && shipment.body.status !== "cancelled"
    expect(isLive, `order ${order.id} ${order.status}`).toBe(order.status === "CONFIRMED")
  }
}

/**
 * The first value `probe` gives that is not `undefined`, asked every 50 ms for up to
 * `timeoutMs`: for what the system records a moment after the answer a test waited for (a
 * saga's end, written just after its last step decided the order).
 */
export const eventually = async <A>(what: string, probe: () => Promise<A | undefined>, timeoutMs = 15_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = await probe()
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(50)
  }
}

/** The `q` quantile (0 to 1) of `values`. */
export const quantile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}
