/**
 * `GET /v1/admin/dead-letters` and `POST /v1/admin/dead-letters/{id}/replay` through the real
 * gateway (identity checking credentials, every answer checked against /openapi.json), with the
 * toy modules of runtime/testing/MessagingToy.ts given a few public routes of their own to drive
 * them: in one process (in-process broker), and split (gateway, identity and the publisher in one
 * server, the subscriber in another, events through RabbitMQ in a vhost of their own).
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { Effect, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Gateway from "../gateway/Gateway.ts"
import * as Problem from "../gateway/Problem.ts"
import * as Module from "../Module.ts"
import * as Toy from "../testing/MessagingToy.ts"
import * as OpenApiConformance from "../testing/OpenApiConformance.ts"
import * as Processes from "../testing/Processes.ts"
import * as Services from "../testing/Services.ts"
import * as TestServer from "../testing/TestServer.ts"

const ADMIN = { email: "dead-letters-admin@example.com", password: "admin password 1" }
const SECRET = "dead-letters-test-secret-0123456789abcdef"

// Test-only routes that drive the toys (public: they only stand in for what real modules do).
class PubRoutes extends HttpApiGroup.make("toypub").add(
  HttpApiEndpoint.post("happen", "/v1/toy/happen")
    .setPayload(Problem.payload(Schema.Struct({ aggregate: Schema.String, n: Schema.Int, failTimes: Schema.Int })))
    .addSuccess(Schema.Void, { status: 204 })
) {}
class SubRoutes extends HttpApiGroup.make("toysub")
  .add(HttpApiEndpoint.post("fix", "/v1/toy/fix").setPayload(Problem.payload(Schema.Struct({ aggregate: Schema.String }))).addSuccess(Schema.Void, { status: 204 }))
  .add(HttpApiEndpoint.get("applied", "/v1/toy/applied").addSuccess(Schema.Array(Toy.Applied)))
{}

const orDie = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.orDie(effect)
const ToyPub = Module.make({
  client: Toy.PubClient,
  handlers: Toy.ToyPubModule.handlers,
  publishes: [Toy.ToyHappened],
  http: {
    group: PubRoutes,
    layer: HttpApiBuilder.group(HttpApi.make(Gateway.API_ID).add(PubRoutes), "toypub", (handlers) =>
      Effect.map(Toy.PubClient, (pub) =>
        handlers.handle("happen", ({ payload }) => orDie(pub.happen({ ...payload, rollback: false })))))
  }
})
const ToySub = Module.make({
  client: Toy.SubClient,
  handlers: Toy.ToySubModule.handlers,
  subscribes: Toy.ToySubModule.subscribes,
  http: {
    group: SubRoutes,
    layer: HttpApiBuilder.group(HttpApi.make(Gateway.API_ID).add(SubRoutes), "toysub", (handlers) =>
      Effect.map(Toy.SubClient, (sub) =>
        handlers
          .handle("fix", ({ payload }) => orDie(sub.fix(payload)))
          .handle("applied", () => orDie(sub.applied()))))
  }
})
const build = [...modules.filter((m) => m.name === "identity"), ToyPub, ToySub]

const EVENTS = {
  TESSERA_EVENTS_RETRY_BACKOFF: "50 millis",
  TESSERA_EVENTS_MAX_DELIVERIES: "2",
  TESSERA_EVENTS_POLL_INTERVAL: "2 seconds",
  TESSERA_RATE_LIMIT: "0",
  TESSERA_PASSWORD_HASH_COST: "10",
  TESSERA_ADMIN_EMAIL: ADMIN.email,
  TESSERA_ADMIN_PASSWORD: ADMIN.password
}

const rabbit = await Services.findRabbit()
const checkedFetch = OpenApiConformance.checkedFetch()

const unique = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`

const suite = (title: string, start: () => Promise<{ readonly url: string; readonly close: () => Promise<void> }>) =>
  describe(title, () => {
    let server: { readonly url: string; readonly close: () => Promise<void> } | undefined
    let admin = ""
    let customer = ""
    const api = async (path: string, init: { token?: string; json?: unknown; method?: string } = {}) => {
      const response = await checkedFetch(`${server!.url}${path}`, {
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
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    const deadOf = async (aggregate: string) =>
      ((await api("/v1/admin/dead-letters?limit=100", { token: admin })).body.items as Array<any>).filter((d) => d.aggregate === aggregate)
    const appliedOf = async (aggregate: string) =>
      ((await api("/v1/toy/applied")).body as Array<any>).filter((r) => r.aggregate === aggregate).map((r) => r.n as number)

    beforeAll(async () => {
      server = await start()
      admin = await login(ADMIN)
      const credentials = { email: `dead-letters-${crypto.randomUUID()}@example.com`, password: "a good password" }
      expect((await api("/v1/auth/register", { json: { ...credentials, name: "Cu" } })).status).toBe(201)
      customer = await login(credentials)
    })
    afterAll(async () => {
      await server?.close()
    })

    it("lists and replays for admins only: 401 without a credential, 403 for a customer", async () => {
      expect((await api("/v1/admin/dead-letters")).status).toBe(401)
      expect((await api("/v1/admin/dead-letters", { token: customer })).status).toBe(403)
      expect((await api("/v1/admin/dead-letters/toysub-1/replay", { method: "POST" })).status).toBe(401)
      expect((await api("/v1/admin/dead-letters/toysub-1/replay", { method: "POST", token: customer })).status).toBe(403)
      expect((await api("/v1/admin/dead-letters", { token: admin })).status).toBe(200)
    })

    it("dead-letters a poison message, lists it, replays it once fixed: applied exactly once", async () => {
      const poisoned = unique("poison")
      const fine = unique("fine")
      expect((await api("/v1/toy/happen", { json: { aggregate: poisoned, n: 1, failTimes: 99 } })).status).toBe(204)
      await api("/v1/toy/happen", { json: { aggregate: fine, n: 1, failTimes: 0 } })
      await waitFor("the other aggregate's event", async () => ((await appliedOf(fine)).length > 0 ? true : undefined))
      const [dead] = await waitFor("the dead letter", async () => {
        const found = await deadOf(poisoned)
        return found.length > 0 ? found : undefined
      })
      expect(dead).toMatchObject({
        subscriber: "toysub",
        publisher: "toypub",
        event: "ToyHappened",
        aggregate: poisoned,
        attempts: 2,
        replayedAt: null,
        payload: { aggregate: poisoned, n: 1, failTimes: 99 }
      })
      expect(dead.lastError).toMatch(/toy handler fails/)
      expect(typeof dead.deadLetteredAt).toBe("string")

      await api("/v1/toy/fix", { json: { aggregate: poisoned } })
      const replayed = await api(`/v1/admin/dead-letters/${dead.id}/replay`, { method: "POST", token: admin })
      expect(replayed.status).toBe(202)
      expect(replayed.body).toMatchObject({ id: dead.id, messageId: dead.messageId })
      expect(replayed.body.replayedAt).not.toBeNull()
      await waitFor("the replayed event", async () => ((await appliedOf(poisoned)).length > 0 ? true : undefined))
      const again = await api(`/v1/admin/dead-letters/${dead.id}/replay`, { method: "POST", token: admin })
      expect(again.status).toBe(409)
      expect(again.body.type).toMatch(/dead-letter-already-replayed/)
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(await appliedOf(poisoned)).toEqual([1])
      const states = await api("/v1/admin/dead-letters?state=replayed&limit=100", { token: admin })
      expect((states.body.items as Array<any>).map((d) => d.id)).toContain(dead.id)
    })

    it("pages newest first with a cursor, and refuses one it did not hand out", async () => {
      const poisoned = unique("paged")
      for (let n = 1; n <= 3; n++) await api("/v1/toy/happen", { json: { aggregate: `${poisoned}-${n}`, n, failTimes: 99 } })
      await waitFor("three dead letters", async () => {
        const all = (await api("/v1/admin/dead-letters?state=pending&limit=100", { token: admin })).body.items as Array<any>
        return all.filter((d) => d.aggregate.startsWith(poisoned)).length === 3 ? true : undefined
      })
      const whole = (await api("/v1/admin/dead-letters?limit=100", { token: admin })).body
      expect(whole.nextCursor).toBeNull()
      const ids: Array<string> = []
      let cursor: string | null = null
      do {
        const page: any = (await api(`/v1/admin/dead-letters?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { token: admin })).body
        expect(page.items.length).toBeLessThanOrEqual(2)
        ids.push(...page.items.map((d: any) => d.id))
        cursor = page.nextCursor
      } while (cursor !== null)
      expect(ids).toEqual(whole.items.map((d: any) => d.id))
      const times = whole.items.map((d: any) => Date.parse(d.deadLetteredAt))
      expect([...times].sort((a, b) => b - a)).toEqual(times)

      const bad = await api("/v1/admin/dead-letters?cursor=nonsense", { token: admin })
      expect(bad.status).toBe(400)
      expect(JSON.stringify(bad.body.errors)).toMatch(/cursor/)
    })

    it("answers 404 for an unknown dead letter", async () => {
      for (const id of ["toysub-987654321", "nosuchmodule-1", "garbage"]) {
        const answer = await api(`/v1/admin/dead-letters/${id}/replay`, { method: "POST", token: admin })
        expect(answer.status).toBe(404)
        expect(answer.body.type).toMatch(/dead-letter-not-found/)
      }
    })
  })

suite("dead letters through the gateway, in one process", () =>
  TestServer.startOnTestDatabase(build, { ...EVENTS, TESSERA_MODULES: "gateway,identity,toypub,toysub" }))

describe.skipIf(!rabbit.ok)("split", () => {
  let vhost: { readonly url: string; readonly drop: () => Promise<void> } | undefined
  afterAll(async () => {
    await vhost?.drop()
  })
  suite("dead letters through the gateway, the subscriber in another process, through RabbitMQ", async () => {
    vhost = await Services.isolatedRabbit((rabbit as { value: string }).value)
    const [front, back] = [await Processes.freePort(), await Processes.freePort()]
    const shared = { ...EVENTS, TESSERA_SERVICE_SECRET: SECRET, AMQP_URL: vhost.url }
    const [gateway, subscriber] = await Promise.all([
      TestServer.startOnTestDatabase(build, {
        ...shared,
        PORT: String(front),
        TESSERA_MODULES: "gateway,identity,toypub",
        TESSERA_PEERS: `toysub=http://127.0.0.1:${back}`
      }),
      TestServer.startOnTestDatabase(build, { ...shared, PORT: String(back), TESSERA_MODULES: "toysub" })
    ])
    return {
      url: gateway.url,
      close: async () => {
        await gateway.close()
        await subscriber.close()
      }
    }
  })
})
