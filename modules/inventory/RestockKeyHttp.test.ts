/**
 * `POST /v1/products/{id}/stock` passes a client's `Idempotency-Key` to inventory: the same key
 * again answers the same stock and adds nothing; a malformed key is a 400 naming the header.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as TestServer from "../../runtime/testing/TestServer.ts"

const ADMIN = { email: "restock-key-admin@example.com", password: "admin password 1" }

describe("POST /v1/products/{id}/stock with Idempotency-Key", () => {
  let server: TestServer.TestServer | undefined
  beforeAll(async () => {
    server = await TestServer.startOnTestDatabase(modules, {
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_RATE_LIMIT: "0"
    })
  })
  afterAll(() => server?.close())

  const api = async (path: string, init: { token?: string; json?: unknown; headers?: Record<string, string> } = {}) => {
    const response = await fetch(`${server!.url}${path}`, {
      method: init.json === undefined ? "GET" : "POST",
      headers: {
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
        ...(init.json === undefined ? {} : { "content-type": "application/json" }),
        ...init.headers
      },
      ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) })
    })
    return { status: response.status, body: await response.json() as Record<string, any> }
  }

  it("applies a keyed restock once, and refuses a malformed key by name", async () => {
    const admin = (await api("/v1/auth/login", { json: ADMIN })).body.accessToken as string
    const product = await api("/v1/products", {
      token: admin,
      json: { sku: `K-${crypto.randomUUID().slice(0, 8)}`, name: "Keyed", priceCents: 100, currency: "EUR" }
    })
    const path = `/v1/products/${product.body.id}/stock`
    const key = `restock-${crypto.randomUUID()}`
    const first = await api(path, { token: admin, json: { quantity: 4 }, headers: { "Idempotency-Key": key } })
    const again = await api(path, { token: admin, json: { quantity: 4 }, headers: { "Idempotency-Key": key } })
    expect(first).toEqual({ status: 200, body: { productId: product.body.id, available: 4, reserved: 0 } })
    expect(again).toEqual(first)
    const other = await api(path, { token: admin, json: { quantity: 5 }, headers: { "Idempotency-Key": key } })
    expect(other.status).toBe(422)
    expect(other.body.type).toMatch(/idempotency-key-reused/)
    expect((await api(path, { token: admin })).body.available).toBe(4)

    const bad = await api(path, { token: admin, json: { quantity: 1 }, headers: { "Idempotency-Key": "has spaces in it" } })
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body.errors)).toContain("idempotency-key")
    expect((await api(path, { token: admin })).body.available).toBe(4)
  })
})
