/**
 * While catalog cannot answer, the gateway answers a product read with its last good answer to
 * the same request, marked `Tessera-Stale: <age in seconds>`, for TESSERA_CATALOG_STALE_FOR; a
 * read it never answered is 503, with Retry-After from the breaker once it is open. Two servers in this process: catalog alone in one, the rest in
 * the other; then catalog stops.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Processes from "../testing/Processes.ts"
import * as TestServer from "../testing/TestServer.ts"

const ADMIN = { email: "last-good-admin@example.com", password: "admin password 1" }
const SECRET = "last-good-test-secret-0123456789abcdef"

describe("catalog reads while catalog cannot answer", () => {
  let gateway: TestServer.TestServer | undefined
  let catalog: TestServer.TestServer | undefined
  beforeAll(async () => {
    const [gatewayPort, catalogPort] = [await Processes.freePort(), await Processes.freePort()]
    const shared = { TESSERA_SERVICE_SECRET: SECRET, TESSERA_RATE_LIMIT: "0", TESSERA_PASSWORD_HASH_COST: "10" }
    ;[gateway, catalog] = await Promise.all([
      TestServer.startOnTestDatabase(modules, {
        ...shared,
        PORT: String(gatewayPort),
        TESSERA_MODULES: "gateway,identity,inventory,orders,payments,shipping,notifications",
        TESSERA_PEERS: `catalog=http://127.0.0.1:${catalogPort}`,
        TESSERA_ADMIN_EMAIL: ADMIN.email,
        TESSERA_ADMIN_PASSWORD: ADMIN.password
      }),
      TestServer.startOnTestDatabase(modules, { ...shared, PORT: String(catalogPort), TESSERA_MODULES: "catalog" })
    ])
  })
  afterAll(async () => {
    await gateway?.close()
    await catalog?.close()
  })

  const api = async (path: string, init: { token?: string; json?: unknown } = {}) => {
    const response = await fetch(`${gateway!.url}${path}`, {
      method: init.json === undefined ? "GET" : "POST",
      headers: {
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
        ...(init.json === undefined ? {} : { "content-type": "application/json" })
      },
      ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) })
    })
    return {
      status: response.status,
      stale: response.headers.get("tessera-stale"),
      retryAfter: response.headers.get("retry-after"),
      body: await response.json() as Record<string, any>
    }
  }

  it("answers the last good value, saying how old, and 503 for a read it never answered", async () => {
    const admin = (await api("/v1/auth/login", { json: ADMIN })).body.accessToken as string
    const created = await api("/v1/products", {
      token: admin,
      json: { sku: `LG-${crypto.randomUUID().slice(0, 8)}`, name: "Kept", priceCents: 250, currency: "EUR" }
    })
    expect(created.status).toBe(201)
    const fresh = await api(`/v1/products/${created.body.id}`)
    expect(fresh).toMatchObject({ status: 200, stale: null })
    const page = await api("/v1/products?limit=5")
    expect(page).toMatchObject({ status: 200, stale: null })

    await catalog!.close()
    catalog = undefined

    const kept = await api(`/v1/products/${created.body.id}`)
    expect(kept.status).toBe(200)
    expect(kept.body).toEqual(fresh.body)
    expect(Number(kept.stale)).toBeGreaterThanOrEqual(0)
    expect(kept.stale).toMatch(/^\d+$/)
    expect(await api("/v1/products?limit=5")).toMatchObject({ status: 200, body: page.body, stale: expect.stringMatching(/^\d+$/) })

    const never = await api(`/v1/products/${crypto.randomUUID()}`)
    expect(never.status).toBe(503)
    expect(never.stale).toBeNull()
    // By now the breaker of catalog is open: Retry-After says when it lets a probe through (5 s).
    expect(Number(never.retryAfter)).toBeGreaterThanOrEqual(1)
    expect(Number(never.retryAfter)).toBeLessThanOrEqual(5)
  })

  it("is described in /openapi.json on both product reads", async () => {
    const spec = (await api("/openapi.json")).body
    for (const path of ["/v1/products", "/v1/products/{id}"]) {
      expect(spec.paths[path].get.responses["200"].headers["Tessera-Stale"]).toMatchObject({ schema: { type: "integer" } })
    }
  })
})
