/**
 * `GET /v1/admin/resilience`: admins only (401 without a credential, 403 for a customer), and it
 * lists each dependency of the answering process with its breaker, bulkhead and policy. Two
 * servers in this process: gateway, identity and catalog in one, inventory in the other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Processes from "../testing/Processes.ts"
import * as TestServer from "../testing/TestServer.ts"

const ADMIN = { email: "resilience-admin@example.com", password: "admin password 1" }
const SECRET = "resilience-test-secret-0123456789abcdef"

describe("GET /v1/admin/resilience", () => {
  let gateway: TestServer.TestServer | undefined
  let inventory: TestServer.TestServer | undefined
  beforeAll(async () => {
    const [gatewayPort, inventoryPort] = [await Processes.freePort(), await Processes.freePort()]
    const shared = { TESSERA_SERVICE_SECRET: SECRET, TESSERA_RATE_LIMIT: "0", TESSERA_PASSWORD_HASH_COST: "10" }
    ;[gateway, inventory] = await Promise.all([
      TestServer.startOnTestDatabase(modules, {
        ...shared,
        PORT: String(gatewayPort),
        TESSERA_MODULES: "gateway,catalog,identity,orders,payments,shipping,notifications",
        TESSERA_PEERS: `inventory=http://127.0.0.1:${inventoryPort}`,
        TESSERA_INVENTORY_CALL_TIMEOUT: "3 seconds",
        TESSERA_ADMIN_EMAIL: ADMIN.email,
        TESSERA_ADMIN_PASSWORD: ADMIN.password
      }),
      TestServer.startOnTestDatabase(modules, {
        ...shared,
        PORT: String(inventoryPort),
        TESSERA_MODULES: "inventory",
        TESSERA_PEERS: `catalog=http://127.0.0.1:${gatewayPort},identity=http://127.0.0.1:${gatewayPort}`
      })
    ])
  })
  afterAll(async () => {
    await gateway?.close()
    await inventory?.close()
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
    return { status: response.status, body: await response.json() as Record<string, any> }
  }
  const login = async (credentials: { email: string; password: string }) =>
    (await api("/v1/auth/login", { json: credentials })).body.accessToken as string

  it("answers 401 without a credential and 403 to a customer", async () => {
    expect((await api("/v1/admin/resilience")).status).toBe(401)
    const email = `resilience-${crypto.randomUUID()}@example.com`
    await api("/v1/auth/register", { json: { email, password: "a good password", name: "Cu" } })
    const customer = await login({ email, password: "a good password" })
    const refused = await api("/v1/admin/resilience", { token: customer })
    expect(refused.status).toBe(403)
    expect(refused.body.type).toMatch(/forbidden/)
  })

  it("lists each dependency with its breaker, bulkhead and the policy in force", async () => {
    const admin = await login(ADMIN)
    const product = await api("/v1/products", {
      token: admin,
      json: { sku: `R-${crypto.randomUUID().slice(0, 8)}`, name: "Probe", priceCents: 100, currency: "EUR" }
    })
    expect(product.status).toBe(201)
    // A call to inventory, in the other server: its dependency is used and shows one call.
    expect((await api(`/v1/products/${product.body.id}/stock`, { token: admin })).status).toBe(200)
    const answer = await api("/v1/admin/resilience", { token: admin })
    expect(answer.status).toBe(200)
    const byTarget = new Map<string, any>(answer.body.dependencies.map((d: any) => [d.target, d]))
    expect(byTarget.get("inventory")).toMatchObject({
      location: "remote",
      breaker: { state: "Closed", failures: 0, probes: 0 },
      bulkhead: { inFlight: 0, queued: 0, maxConcurrent: 64, maxQueue: 256 },
      policy: { timeoutMs: 3000, deadlineMs: 10000, retry: { maxAttempts: 3 }, breaker: { minimumCalls: 10, probeTimeoutMs: 3000 } }
    })
    expect(byTarget.get("inventory").breaker.calls).toBeGreaterThanOrEqual(1)
    expect(byTarget.get("catalog")).toMatchObject({ location: "local", breaker: null, bulkhead: null, policy: { timeoutMs: 5000 } })
  })

  it("is described in /openapi.json, admin only", async () => {
    const spec = (await api("/openapi.json")).body
    const operation = spec.paths["/v1/admin/resilience"].get
    expect(operation.security.length).toBeGreaterThan(0)
    expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(["200", "401", "403"]))
  })
})
