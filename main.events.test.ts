/**
 * Events and the process (issue 13), through the built release: a process hosting a module that
 * publishes or subscribes to events, told to use a RabbitMQ it cannot reach, is not ready and
 * says why, and becomes ready once it can (here: started again with a broker that answers); a
 * malformed AMQP_URL is refused at start, naming the variable; an event notifications cannot
 * record is dead-lettered, listed to admins through the gateway and, once the cause is gone,
 * replayed and recorded once.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { Connection } from "rabbitmq-client"
import { afterAll, describe, expect, it } from "vitest"
import * as Rabbit from "./runtime/messaging/Rabbit.ts"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const postgres = await Services.findPostgres()
const rabbit = await Services.findRabbit()

const servers: Array<Processes.Server> = []
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
})

const readiness = async (server: Processes.Server) => {
  const response = await fetch(`${server.url}/health/ready`)
  return { status: response.status, body: await response.json() as { status: string; modules: Array<{ name: string; ready: boolean; detail: string }> } }
}

/** The readiness `server` settles on while starting: polls until it is neither refused nor `starting`. */
const settled = async (server: Processes.Server, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const answer = await readiness(server).catch(() => undefined)
    if (answer !== undefined && answer.body.status !== "starting" && answer.body.modules?.length) return answer
    if (Date.now() > deadline) throw new Error(`no settled readiness:\n${server.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

describe.skipIf(!postgres.ok || !rabbit.ok)("a process whose modules use events, and RabbitMQ", () => {
  it("is not ready while RabbitMQ is out of reach, naming it; ready with a broker that answers", async () => {
    const database = await Services.createDatabase((postgres as { value: string }).value)
    try {
      const env = { DATABASE_URL: database.url, TESSERA_MODULES: "catalog", TESSERA_SERVICE_SECRET: "events-service-secret-events-service-secret" }
      const away = Processes.spawnServer(await Processes.freePort(), { ...env, AMQP_URL: "amqp://guest:guest@127.0.0.1:1" })
      servers.push(away)
      const unready = await settled(away)
      expect(unready.status).toBe(503)
      const catalog = unready.body.modules.find((m) => m.name === "catalog")!
      expect(catalog.ready).toBe(false)
      expect(catalog.detail).toMatch(/RabbitMQ unreachable/)
      await away.stop()

      const there = Processes.spawnServer(await Processes.freePort(), { ...env, AMQP_URL: (rabbit as { value: string }).value })
      servers.push(there)
      await Processes.waitReady(there)
      expect((await readiness(there)).status).toBe(200)
      await there.stop()
    } finally {
      await database.drop()
    }
  })

  it("refuses a malformed AMQP_URL at start, naming it", async () => {
    const server = Processes.spawnServer(await Processes.freePort(), { TESSERA_MODULES: "catalog", AMQP_URL: "http://127.0.0.1:5672" })
    servers.push(server)
    const code = await server.exited
    expect(code).not.toBe(0)
    expect(server.output()).toMatch(/AMQP_URL/)
  })
})

/** Runs `statement` on the database at `url` (the admin connection the test owns). */
const execute = (url: string, statement: string) =>
  Effect.runPromise(Effect.scoped(
    Effect.flatMap(PgClient.make({ url: Redacted.make(url), maxConnections: 1 }), (sql) => sql.unsafe(statement))
  ).pipe(Effect.provide(Reactivity.layer)))

describe.skipIf(!postgres.ok || !rabbit.ok)("dead letters through the built release", () => {
  it("dead-letters an event notifications cannot record, lists it to admins only, replays it once fixed: recorded once", async () => {
    const database = await Services.createDatabase((postgres as { value: string }).value)
    const vhost = await Services.isolatedRabbit((rabbit as { value: string }).value)
    const admin = { email: "dead-letters-e2e@example.com", password: "admin password e2e" }
    const checkedFetch = OpenApiConformance.checkedFetch()
    try {
      const server = Processes.spawnServer(await Processes.freePort(), {
        DATABASE_URL: database.url,
        AMQP_URL: vhost.url,
        TESSERA_SERVICE_SECRET: "events-service-secret-events-service-secret",
        TESSERA_ADMIN_EMAIL: admin.email,
        TESSERA_ADMIN_PASSWORD: admin.password,
        TESSERA_PASSWORD_HASH_COST: "10",
        TESSERA_RATE_LIMIT: "0",
        TESSERA_EVENTS_MAX_DELIVERIES: "2",
        TESSERA_EVENTS_RETRY_BACKOFF: "50 millis"
      })
      servers.push(server)
      await Processes.waitReady(server)
      const api = async (path: string, init: { token?: string; json?: unknown; method?: string } = {}) => {
        const response = await checkedFetch(`${server.url}${path}`, {
          method: init.method ?? (init.json === undefined ? "GET" : "POST"),
          headers: {
            ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
            ...(init.json === undefined ? {} : { "content-type": "application/json" })
          },
          ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) })
        })
        const text = await response.text()
        return { status: response.status, body: (text === "" ? undefined : JSON.parse(text)) as any }
      }
      const login = async (credentials: { email: string; password: string }) =>
        (await api("/v1/auth/login", { json: credentials })).body.accessToken as string
      const waitFor = async <A>(what: string, look: () => Promise<A | undefined>, timeoutMs = 30_000): Promise<A> => {
        const deadline = Date.now() + timeoutMs
        for (;;) {
          const found = await look()
          if (found !== undefined) return found
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${server.output()}`)
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }
      const adminToken = await login(admin)
      const customer = { email: `dl-${crypto.randomUUID()}@example.com`, password: "a good password" }
      expect((await api("/v1/auth/register", { json: { ...customer, name: "Dee" } })).status).toBe(201)
      const customerToken = await login(customer)
      const customerId = (await api("/v1/me", { token: customerToken })).body.id as string

      // notifications cannot record anything for now: its handler fails.
      await execute(database.url, "ALTER TABLE notifications.notifications ADD CONSTRAINT dead_letters_e2e CHECK (false) NOT VALID")
      // orders' OrderConfirmed, as orders' relay publishes it (orders itself needs no order here).
      const orderId = crypto.randomUUID()
      const connection = new Connection(vhost.url)
      try {
        const publisher = connection.createPublisher({ confirm: true })
        await publisher.send({ exchange: Rabbit.EXCHANGE, routingKey: "orders.OrderConfirmed", durable: true, contentType: "application/json" }, {
          id: crypto.randomUUID(),
          publisher: "orders",
          event: "OrderConfirmed",
          aggregate: orderId,
          seq: "1",
          payload: { orderId, customerId, totalCents: 850, currency: "EUR" },
          publishedAt: new Date().toISOString()
        })
        await publisher.close()
      } finally {
        await connection.close()
      }

      const dead = await waitFor("the dead letter", async () =>
        ((await api("/v1/admin/dead-letters", { token: adminToken })).body.items as Array<any>).find((d) => d.aggregate === orderId))
      expect(dead).toMatchObject({ subscriber: "notifications", publisher: "orders", event: "OrderConfirmed", attempts: 2, replayedAt: null })
      expect(dead.lastError).toMatch(/dead_letters_e2e|check constraint/i)
      expect((await api("/v1/admin/dead-letters")).status).toBe(401)
      expect((await api("/v1/admin/dead-letters", { token: customerToken })).status).toBe(403)
      expect((await api(`/v1/admin/dead-letters/${dead.id}/replay`, { method: "POST", token: customerToken })).status).toBe(403)
      expect((await api("/v1/me/notifications", { token: customerToken })).body.items).toEqual([])

      await execute(database.url, "ALTER TABLE notifications.notifications DROP CONSTRAINT dead_letters_e2e")
      expect((await api(`/v1/admin/dead-letters/${dead.id}/replay`, { method: "POST", token: adminToken })).status).toBe(202)
      const [notification] = await waitFor("the notification", async () => {
        const items = (await api("/v1/me/notifications", { token: customerToken })).body.items as Array<any>
        return items.length > 0 ? items : undefined
      })
      expect(notification).toMatchObject({ kind: "order_confirmed", orderId })
      expect((await api(`/v1/admin/dead-letters/${dead.id}/replay`, { method: "POST", token: adminToken })).status).toBe(409)
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect((await api("/v1/me/notifications", { token: customerToken })).body.items).toHaveLength(1)
      await server.stop()
    } finally {
      await database.drop()
      await vhost.drop()
    }
  }, 180_000)
})
