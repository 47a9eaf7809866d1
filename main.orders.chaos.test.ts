/**
 * The order saga under crashes in one process, end to end on PostgreSQL with the built release:
 * a stream of orders from several customers while the one process hosting every module is
 * killed with SIGKILL at random moments and started again (main.orders.crash.test.ts does the
 * same with orders and payments each in a process of its own). The payment provider simulator runs as a process
 * of its own, so its ledger outlives the kills. When all is quiet:
 *
 * - every order is CONFIRMED or CANCELLED;
 * - for every product: available + reserved + sold = stocked, nothing left reserved;
 * - the provider's ledger holds exactly one net charge per confirmed order and none per cancelled one;
 * - a live shipment exists exactly for the confirmed orders.
 *
 * The clients behave as a shop's would: an order that got no answer is placed again with the
 * same Idempotency-Key until it is accepted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const postgres = await Services.findPostgres()
const skipped = postgres.ok ? undefined : Services.unavailable("PostgreSQL", postgres.reason)

const ADMIN = { email: "admin@tessera.test", password: "admin-password-crash-test" } as const
const SECRET = "crash-test-service-secret-crash-test-secret"
/** How long orders stream while processes are killed. */
const STREAM_MS = Number(process.env.CRASH_STREAM_MS ?? 12_000)
const PRODUCTS = 3
const STOCKED = 40

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const random = (min: number, max: number) => min + Math.random() * (max - min)

interface Json {
  readonly status: number
  readonly body: any
}

/** A client of one gateway as one user, from its own address (the rate limit is per client). */
const client = (gateway: () => string, token?: string) => {
  const address = `198.51.100.${Math.floor(Math.random() * 254) + 1}`
  return async (route: string, init: { json?: unknown; method?: string; headers?: Record<string, string> } = {}): Promise<Json> => {
    const headers: Record<string, string> = { "x-forwarded-for": address, ...init.headers }
    if (token) headers.authorization = `Bearer ${token}`
    if (init.json !== undefined) headers["content-type"] = "application/json"
    const response = await fetch(`${gateway()}${route}`, {
      method: init.method ?? (init.json !== undefined ? "POST" : "GET"),
      headers,
      ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
      signal: AbortSignal.timeout(15_000)
    })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  }
}

/** Tries `f` until it answers without a transport failure or 5xx, for at most `ms`. */
const persist = async (f: () => Promise<Json>, ms = 60_000): Promise<Json> => {
  const end = Date.now() + ms
  let last: unknown
  while (Date.now() < end) {
    try {
      const answer = await f()
      if (answer.status < 500) return answer
      last = answer
    } catch (error) {
      last = error
    }
    await sleep(200)
  }
  throw new Error(`no answer within ${ms} ms; last: ${JSON.stringify(last)}`)
}

interface Deployment {
  readonly gateway: () => string
  readonly sim: Processes.Server
  /** The processes the test kills, by name. */
  readonly victims: ReadonlyArray<string>
  readonly kill: (name: string) => Promise<void>
  readonly restart: (name: string) => Promise<void>
  readonly stop: () => Promise<void>
}

/** Starts the simulator and the processes of `layout` (name → modules) on a new database. */
const deploy = async (layout: Record<string, string>, victims: ReadonlyArray<string>): Promise<Deployment> => {
  const database = await Services.createDatabase(postgres.ok ? postgres.value : "")
  const simPort = await Processes.freePort()
  const sim = Processes.spawnCommand(["psp-sim", "--port", String(simPort)], {}, simPort)
  const ports = new Map<string, number>()
  for (const name of Object.keys(layout)) ports.set(name, await Processes.freePort())
  const peers = Object.entries(layout)
    .flatMap(([name, modules]) => modules.split(",").filter((m) => m !== "gateway").map((m) => `${m}=http://127.0.0.1:${ports.get(name)}`))
    .join(",")
  const envOf = (name: string) => ({
    DATABASE_URL: database.url,
    TESSERA_MODULES: layout[name]!,
    TESSERA_PEERS: Object.keys(layout).length > 1 ? peers : "",
    TESSERA_SERVICE_SECRET: SECRET,
    TESSERA_ADMIN_EMAIL: ADMIN.email,
    TESSERA_ADMIN_PASSWORD: ADMIN.password,
    TESSERA_PASSWORD_HASH_COST: "10",
    TESSERA_RATE_LIMIT: "100000",
    TESSERA_TRUSTED_PROXIES: "1",
    TESSERA_PAYMENT_PROVIDER_URL: `http://127.0.0.1:${simPort}`
  })
  const servers = new Map<string, Processes.Server>()
  const start = (name: string) => servers.set(name, Processes.spawnServer(ports.get(name)!, envOf(name)))
  for (const name of Object.keys(layout)) start(name)
  const stop = async () => {
    await Promise.all([...servers.values(), sim].map((server) => server.stop()))
    await database.drop()
  }
  try {
    await Promise.all([...servers.values()].map((server) => Processes.waitReady(server)))
    // The simulator has no health routes: it is up once it answers.
    await persist(() => fetch(`${sim.url}/admin/behaviour`).then(async (r) => ({ status: r.status, body: await r.text() })))
  } catch (error) {
    // A deployment that never came up leaves nothing running behind it.
    await stop()
    throw error
  }
  const front = Object.keys(layout).find((name) => layout[name] === "all" || layout[name]!.split(",").includes("gateway"))!
  return {
    gateway: () => servers.get(front)!.url,
    sim,
    victims,
    kill: async (name) => {
      const server = servers.get(name)!
      server.process.kill("SIGKILL")
      await server.exited
    },
    restart: async (name) => {
      start(name)
      await Processes.waitReady(servers.get(name)!)
    },
    stop
  }
}

const login = async (gateway: () => string, credentials: { email: string; password: string }) => {
  const answer = await persist(() => client(gateway)("/v1/auth/login", { json: credentials }))
  if (answer.status !== 200) throw new Error(`login: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.accessToken as string
}

const customer = async (gateway: () => string) => {
  const email = `crash-${crypto.randomUUID()}@example.com`
  const password = "customer-password-1"
  const registered = await persist(() => client(gateway)("/v1/auth/register", { json: { email, password, name: "Crash Test" } }))
  if (registered.status !== 201) throw new Error(`register: ${registered.status} ${JSON.stringify(registered.body)}`)
  return client(gateway, await login(gateway, { email, password }))
}

const ADDRESS = { name: "Ana Crash", line1: "1 Test Street", city: "Lisbon", postalCode: "1000-001", country: "PT" }

/** Products with `units` in stock each. */
const stockedProducts = async (admin: ReturnType<typeof client>, count: number, units: number) => {
  const ids: Array<string> = []
  for (let i = 0; i < count; i++) {
    const created = await persist(() =>
      admin("/v1/products", { json: { sku: `CRASH-${crypto.randomUUID().slice(0, 8)}`, name: `Crash ${i}`, priceCents: 1000 + i, currency: "EUR" } })
    )
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    const restocked = await persist(() => admin(`/v1/products/${created.body.id}/stock`, { json: { quantity: units } }))
    expect(restocked.status, JSON.stringify(restocked.body)).toBe(200)
    ids.push(created.body.id)
  }
  return ids
}

/** Waits until every order in `ids` has ended; returns them. */
const settled = async (api: ReturnType<typeof client>, ids: ReadonlyArray<string>, ms = 120_000) => {
  const end = Date.now() + ms
  const done = new Map<string, any>()
  while (Date.now() < end) {
    for (const id of ids) {
      if (done.has(id)) continue
      const answer = await persist(() => api(`/v1/orders/${id}`))
      if (answer.status === 200 && answer.body.status !== "PENDING") done.set(id, answer.body)
    }
    if (done.size === ids.length) return [...done.values()]
    await sleep(500)
  }
  throw new Error(`${ids.length - done.size} of ${ids.length} orders still PENDING after ${ms} ms`)
}

/** The invariants of a quiet system after `orders` (all ended). */
const checkInvariants = async (
  deployment: Deployment,
  admin: ReturnType<typeof client>,
  products: ReadonlyArray<string>,
  orders: ReadonlyArray<any>
) => {
  const sold = new Map<string, number>(products.map((id) => [id, 0]))
  for (const order of orders) {
    expect(["CONFIRMED", "CANCELLED"]).toContain(order.status)
    if (order.status === "CONFIRMED") for (const item of order.items) sold.set(item.productId, sold.get(item.productId)! + item.quantity)
  }
  for (const id of products) {
    const stock = await persist(() => admin(`/v1/products/${id}/stock`))
    expect(stock.status).toBe(200)
    expect({ product: id, reserved: stock.body.reserved, total: stock.body.available + stock.body.reserved + sold.get(id)! })
      .toEqual({ product: id, reserved: 0, total: STOCKED })
  }
  const ledger = await (await fetch(`${deployment.sim.url}/admin/ledger`)).json() as {
    charges: ReadonlyArray<{ id: string; status: string; refunded: boolean; reference?: string }>
  }
  const netCharges = new Map<string, number>()
  for (const charge of ledger.charges) {
    if (charge.status !== "succeeded" || charge.refunded) continue
    netCharges.set(charge.id, (netCharges.get(charge.id) ?? 0) + 1)
  }
  let live = 0
  for (const order of orders) {
    const payment = await persist(() => admin(`/v1/orders/${order.id}/payment`))
    const shipment = await persist(() => admin(`/v1/orders/${order.id}/shipment`))
    if (order.status === "CONFIRMED") {
      expect(payment.status, `payment of confirmed order ${order.id}`).toBe(200)
      expect(payment.body.status).toBe("charged")
      expect(netCharges.get(payment.body.providerChargeId), `net charges of confirmed order ${order.id}`).toBe(1)
      expect(shipment.status, `shipment of confirmed order ${order.id}`).toBe(200)
      expect(shipment.body.status).not.toBe("cancelled")
      live++
    } else {
      if (payment.status === 200 && payment.body.providerChargeId) {
        expect(netCharges.get(payment.body.providerChargeId) ?? 0, `net charges of cancelled order ${order.id}`).toBe(0)
      }
      if (shipment.status === 200) expect(shipment.body.status, `shipment of cancelled order ${order.id}`).toBe("cancelled")
    }
  }
  // No charge stands that no confirmed order accounts for.
  expect([...netCharges.values()].reduce((a, b) => a + b, 0)).toBe(live)
}

/** Orders from several customers for `ms`, each placed again with its key until accepted. */
const stream = async (gateway: () => string, products: ReadonlyArray<string>, ms: number) => {
  const customers = await Promise.all([1, 2, 3].map(() => customer(gateway)))
  const ids: Array<string> = []
  const end = Date.now() + ms
  await Promise.all(customers.map(async (api, c) => {
    let n = 0
    while (Date.now() < end) {
      const key = `crash-${c}-${n++}-${crypto.randomUUID()}`
      const token = Math.random() < 0.8 ? "tok_ok" : "tok_decline"
      const body = {
        items: [{ productId: products[Math.floor(Math.random() * products.length)]!, quantity: 1 + Math.floor(Math.random() * 2) }],
        shippingAddress: ADDRESS,
        paymentToken: token
      }
      const placed = await persist(() => api("/v1/orders", { json: body, headers: { "idempotency-key": key } }), 90_000)
      expect(placed.status, JSON.stringify(placed.body)).toBe(202)
      ids.push(placed.body.id)
      await sleep(random(20, 120))
    }
  }))
  return ids
}

/** Kills one of the victims at random moments until `stop` resolves, and starts it again. */
const chaos = (deployment: Deployment, until: Promise<unknown>) => {
  let running = true
  void until.finally(() => (running = false))
  let kills = 0
  const done = (async () => {
    await sleep(random(800, 1500))
    while (running) {
      const victim = deployment.victims[Math.floor(Math.random() * deployment.victims.length)]!
      await deployment.kill(victim)
      kills++
      await sleep(random(100, 600))
      await deployment.restart(victim)
      await sleep(random(1000, 2500))
    }
  })()
  return { done, kills: () => kills }
}

/** Split, with orders and payments each in a process of its own, is main.orders.crash.test.ts. */
const layouts = [{ name: "one process", layout: { all: "all" }, victims: ["all"] }] as const

describe.skipIf(skipped)(`order saga under crashes${skipped ? ` (skipped: ${skipped})` : ""}`, () => {
  for (const { layout, name, victims } of layouts) {
    describe(name, () => {
      let deployment: Deployment
      let admin: ReturnType<typeof client>
      beforeAll(async () => {
        deployment = await deploy(layout, victims)
        admin = client(deployment.gateway, await login(deployment.gateway, ADMIN))
      })
      afterAll(() => deployment?.stop())

      it("a stream of orders while processes are killed with SIGKILL ends consistent", async () => {
        const products = await stockedProducts(admin, PRODUCTS, STOCKED)
        const placing = stream(deployment.gateway, products, STREAM_MS)
        const killer = chaos(deployment, placing)
        const ids = await placing
        await killer.done
        const orders = await settled(admin, ids)
        const confirmed = orders.filter((o) => o.status === "CONFIRMED").length
        console.log(
          `crash test (${name}): ${ids.length} orders, ${killer.kills()} kills, ${confirmed} confirmed, ` +
            `${orders.length - confirmed} cancelled (${[...new Set(orders.map((o) => o.failureReason).filter(Boolean))].join(", ")})`
        )
        expect(killer.kills()).toBeGreaterThan(0)
        await checkInvariants(deployment, admin, products, orders)
      }, 400_000)
    })
  }
})
