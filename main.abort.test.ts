/**
 * Clients that leave early never wedge a process: against real `tessera serve` processes (one
 * embedded, one on PostgreSQL with a pool of two), requests to every operation the process
 * describes in /openapi.json are cut at random moments, hundreds of them at once; afterwards
 * every operation still answers, and the process is ready and live, and it shuts down cleanly
 * in the middle of such a storm. On PostgreSQL, a statement held past its timeout is answered
 * 503 with Retry-After, and the next one is served.
 */
import { Buffer } from "node:buffer"
import * as http from "node:http"
import * as net from "node:net"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const ADMIN = { email: "admin@abort.test", password: "admin-password-abort" }

const settings = {
  TESSERA_ADMIN_EMAIL: ADMIN.email,
  TESSERA_ADMIN_PASSWORD: ADMIN.password,
  TESSERA_PASSWORD_HASH_COST: "10",
  // Hundreds of requests from one address: no rate limit here.
  TESSERA_RATE_LIMIT: "0",
  TESSERA_DB_ACQUIRE_TIMEOUT: "2 seconds",
  LOG_LEVEL: "error"
}

interface Operation {
  readonly method: string
  /** The path with its parameters filled in. */
  readonly path: string
  readonly body: string | undefined
}

/** A fresh value for the parts of a body that must be unique. */
const unique = () => Math.random().toString(36).slice(2, 10)

/**
 * A valid body for every operation that takes one, by its path template: an operation whose body
 * is missing here fails the sweep, so a new one gets a body (and is swept) when it is added.
 */
/** The product new orders ask for (made by `operations`). */
let orderedProduct = ""

const bodies: Record<string, () => unknown> = {
  "POST /v1/orders": () => ({
    items: [{ productId: orderedProduct, quantity: 1 }],
    shippingAddress: { name: "Ana Abort", line1: "1 Cut St", city: "Berlin", postalCode: "10115", country: "DE" },
    paymentToken: "tok_ok"
  }),
  "POST /v1/products": () => ({ sku: `sku-${unique()}`, name: "Lamp", priceCents: 1299, currency: "EUR" }),
  "POST /v1/products/{id}/stock": () => ({ quantity: 1 }),
  "POST /v1/auth/register": () => ({ email: `abort-${unique()}@example.com`, password: "a-long-password", name: "Ana" }),
  "POST /v1/auth/login": () => ADMIN,
  "POST /v1/api-keys": () => ({ name: `key ${unique()}`, role: "customer" })
}

/** A new Idempotency-Key on every request: a route that requires one (POST /v1/orders) gets it. */
const keyed = { get "idempotency-key"() {
  return crypto.randomUUID()
} }

const request = (base: string, operation: Operation, token: string, timeoutMs = 15_000) =>
  fetch(`${base}${operation.path}`, {
    method: operation.method,
    headers: { authorization: `Bearer ${token}`, ...keyed, ...(operation.body ? { "content-type": "application/json" } : {}) },
    body: operation.body,
    signal: AbortSignal.timeout(timeoutMs)
  })

/** Sends `operation` and closes the connection `afterMs` later, answered or not. */
const cut = (base: string, operation: Operation, token: string, afterMs: number) =>
  new Promise<void>((resolve) => {
    const req = http.request(`${base}${operation.path}`, {
      method: operation.method,
      agent: false,
      headers: { authorization: `Bearer ${token}`, ...keyed, ...(operation.body ? { "content-type": "application/json" } : {}) }
    })
    req.on("error", () => resolve())
    req.on("close", () => resolve())
    req.on("response", (response) => response.resume())
    setTimeout(() => req.destroy(), afterMs)
    req.end(operation.body)
  })

/** Every operation of the served description, its path parameters filled with existing ids. */
const operations = async (base: string, token: string): Promise<ReadonlyArray<Operation>> => {
  const json = async (operation: Operation) => (await (await request(base, operation, token)).json()) as Record<string, unknown>
  const product = await json({ method: "POST", path: "/v1/products", body: JSON.stringify(bodies["POST /v1/products"]!()) })
  const me = await json({ method: "GET", path: "/v1/me", body: undefined })
  orderedProduct = String(product.id)
  const order = await json({ method: "POST", path: "/v1/orders", body: JSON.stringify(bodies["POST /v1/orders"]!()) })
  const ids: Record<string, string> = { products: String(product.id), users: String(me.id), orders: String(order.id) }
  const spec = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> }
  const found: Array<Operation> = []
  for (const [template, methods] of Object.entries(spec.paths)) {
    for (const [method, described] of Object.entries(methods)) {
      const key = `${method.toUpperCase()} ${template}`
      const takesBody = typeof described === "object" && described !== null && "requestBody" in described
      if (takesBody && bodies[key] === undefined) throw new Error(`no body for ${key}: add one to the sweep`)
      const filled = template.replace(/\/([a-z-]+)\/\{id\}/g, (_, collection: string) => {
        // An API key is revoked by DELETE: each cut request gets a key of its own.
        return `/${collection}/${ids[collection] ?? "{api-key}"}`
      })
      found.push({ method: method.toUpperCase(), path: filled, body: takesBody ? JSON.stringify(bodies[key]!()) : undefined })
    }
  }
  // Each API key operation on a key of its own (a revoked key answers 404, not an error).
  for (const operation of found.filter((o) => o.path.includes("{api-key}"))) {
    const key = await json({ method: "POST", path: "/v1/api-keys", body: JSON.stringify(bodies["POST /v1/api-keys"]!()) })
    found[found.indexOf(operation)] = { ...operation, path: operation.path.replace("{api-key}", String(key.id)) }
  }
  return found
}

const login = async (base: string) => {
  const response = await fetch(`${base}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(ADMIN)
  })
  expect(response.status).toBe(200)
  return ((await response.json()) as { accessToken: string }).accessToken
}

interface Deployment {
  readonly database: Services.TestDatabase
  readonly server: Processes.Server
  readonly token: string
}

/** Both processes start at once: starting is most of this file's time. */
const deployments = new Map<string, Promise<Deployment>>()
const start = async (acquire: () => Promise<Services.TestDatabase>): Promise<Deployment> => {
  const database = await acquire()
  const port = await Processes.freePort()
  const server = Processes.spawnServer(port, {
    ...settings,
    ...(database.database._tag === "Postgres"
      ? { DATABASE_URL: database.database.url, TESSERA_DB_POOL_SIZE: "2", TESSERA_DB_STATEMENT_TIMEOUT: "1 second" }
      : { TESSERA_DATA_DIR: database.database.dataDir })
  })
  await Processes.waitReady(server)
  return { database, server, token: await login(server.url) }
}

const databases = await Services.databases()
for (const { acquire, name } of databases) {
  if (typeof acquire !== "string") deployments.set(name, start(acquire))
}
afterAll(async () => {
  await Promise.all([...deployments.values()].map(async (deployment) => {
    const { database, server } = await deployment.catch(() => ({ database: undefined, server: undefined }))
    await server?.stop()
    await database?.release()
  }))
})

for (const { acquire, name } of databases) {
  if (typeof acquire === "string") {
    describe.skip(`clients that leave early, ${name}`, () => it(acquire, () => {}))
    continue
  }

  describe(`clients that leave early, ${name}`, () => {
    let database: Services.TestDatabase
    let server: Processes.Server
    let token: string

    beforeAll(async () => {
      ;({ database, server, token } = await deployments.get(name)!)
    }, 120_000)

    it("answers every operation, and is ready and live, after hundreds of requests cut at random moments", async () => {
      const swept = await operations(server.url, token)
      expect(swept.length).toBeGreaterThanOrEqual(10)
      for (let round = 0; round < 2; round++) {
        await Promise.all(swept.flatMap((operation) =>
          Array.from({ length: 12 }, () => cut(server.url, operation, token, Math.random() * 150))
        ))
      }
      const answers: Record<string, number> = {}
      for (const operation of swept) {
        answers[`${operation.method} ${operation.path}`] = (await request(server.url, operation, token)).status
      }
      expect(Object.entries(answers).filter(([, status]) => status >= 500)).toEqual([])
      expect(answers[`GET /v1/products`]).toBe(200)
      expect((await fetch(`${server.url}/health/ready`)).status).toBe(200)
      expect((await fetch(`${server.url}/health/live`)).status).toBe(200)
    }, 90_000)

    it("survives peers that reset their RPC connection before its upgrade is accepted", async () => {
      // Node takes its 'error' listener off an upgrading socket; a reset before the endpoint
      // accepts the upgrade (a peer whose handshake timed out) once stopped the process.
      await Promise.all(Array.from({ length: 60 }, (_, i) =>
        new Promise<void>((resolve) => {
          const socket = net.connect(server.port, "127.0.0.1", () => {
            socket.write(
              `GET /rpc/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.from(`reset-${i}-key!!`).toString("base64")}\r\n` +
                `Sec-WebSocket-Protocol: tessera-rpc.1\r\nx-tessera-service: not-a-credential\r\n\r\n`
            )
            setTimeout(() => socket.resetAndDestroy(), i % 3)
          })
          socket.on("error", () => {})
          socket.on("close", () => resolve())
        })
      ))
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(server.process.exitCode, server.output()).toBe(null)
      expect((await fetch(`${server.url}/health/live`)).status).toBe(200)
    }, 30_000)

    if (name === "PostgreSQL") {
      it("answers a statement held past its timeout 503 with Retry-After, and serves the next", async () => {
        const admin = new pg.Client({ connectionString: (database.database as { url: string }).url })
        await admin.connect()
        try {
          await admin.query("BEGIN")
          await admin.query("LOCK TABLE catalog.products IN ACCESS EXCLUSIVE MODE")
          const started = Date.now()
          const held = await fetch(`${server.url}/v1/products`, { signal: AbortSignal.timeout(10_000) })
          const elapsed = Date.now() - started
          expect(held.status).toBe(503)
          expect(held.headers.get("retry-after")).toBe("1")
          expect(held.headers.get("content-type")).toContain("application/problem+json")
          expect(await held.json()).toMatchObject({ type: "/problems/module-unavailable", status: 503 })
          expect(elapsed).toBeLessThan(5_000)
          await admin.query("ROLLBACK")
          expect((await fetch(`${server.url}/v1/products`)).status).toBe(200)
          expect((await fetch(`${server.url}/health/live`)).status).toBe(200)
        } finally {
          await admin.end()
        }
      }, 30_000)
    }

    it("shuts down cleanly (exit 0) on SIGTERM while requests are being cut", async () => {
      const swept = await operations(server.url, token)
      const storm = Promise.all(swept.flatMap((operation) =>
        Array.from({ length: 8 }, () => cut(server.url, operation, token, Math.random() * 150))
      ))
      await new Promise((resolve) => setTimeout(resolve, 60))
      server.process.kill("SIGTERM")
      await storm
      expect(await server.exited).toBe(0)
    }, 30_000)
  })
}
