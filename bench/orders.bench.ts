/**
 * `npm run bench`, order-flow section (issue 12): orders confirmed per second and the time from
 * `POST /v1/orders` to CONFIRMED, in one process and split (orders, payments and shipping each in
 * a process of its own, inventory as two instances the others spread their calls over), each
 * beside a ceiling measured in the same run.
 *
 * - Orders: CALLERS customers place orders (`tok_ok`, one product of ample stock) back to back
 *   for BENCH_SECONDS against the built release on PostgreSQL, the payment provider simulator
 *   in process. Each order's time to CONFIRMED is read afterwards from the order itself
 *   (`updatedAt - createdAt`, both stamped by the database clock), so nothing polls while the
 *   load runs. Orders per second: confirmed orders over the time from the first POST to the last
 *   confirmation.
 * - Ceiling: what the database does for one order, run directly. The run counts the
 *   transactions the database committed (`pg_stat_database.xact_commit`) per confirmed order;
 *   the ceiling runs that many small write transactions per "order" (an INSERT and an UPDATE of
 *   one row, in a table of their own) from CALLERS callers over a pool of the same size as a
 *   module's, and converts them back to orders per second.
 *
 * Goals: orders/s >= 50 % of the ceiling; split >= 70 % of one process. A report, not a test: it
 * exits 0 when a goal is missed and says MISSED. BENCH_ONLY=orders runs this section alone.
 * Skipped, saying why, without PostgreSQL.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as Build from "../runtime/release/Build.ts"
import * as Processes from "../runtime/testing/Processes.ts"
import * as Services from "../runtime/testing/Services.ts"

const ONLY = process.env.BENCH_ONLY
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const CALLERS = Number(process.env.BENCH_ORDER_CALLERS ?? 16)
/** A module's database pool (TESSERA_DATABASE_POOL's default). */
const POOL = 10
/** How often a customer asks whether its order has ended (BENCH_ORDER_POLL_MS). */
const POLL_MS = Number(process.env.BENCH_ORDER_POLL_MS ?? 20)
const CEILING_TARGET = 50
const SPLIT_TARGET = 70
const ADMIN = { email: "admin@tessera.test", password: "admin-password-orders-bench" } as const
const SECRET = "orders-bench-service-secret-orders-bench"
const ADDRESS = { name: "Bench Buyer", line1: "1 Bench Road", city: "Porto", postalCode: "4000-001", country: "PT" }

/** CPU seconds (user + system) process `pid` has spent so far (Linux /proc; 0 elsewhere). */
const cpuSeconds = (pid: number) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100 // USER_HZ
  } catch {
    return 0
  }
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Runs `f` with a PgClient on `url` (a pool of `size`). */
const withSql = <A>(url: string, size: number, f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(PgClient.make({ url: Redacted.make(url), maxConnections: size }), f)).pipe(Effect.provide(Reactivity.layer))
  )

const commits = (url: string) =>
  withSql(url, 1, (sql) =>
    Effect.map(
      sql<{ n: string }>`SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()`,
      (rows) => Number(rows[0]!.n)
    ))

/** With BENCH_ORDER_TABLES=1: rows written per order in each table (where the transactions go). */
const tableWrites = (url: string, orders: number) =>
  withSql(url, 1, (sql) =>
    Effect.map(
      sql<{ t: string; ins: string; upd: string; del: string }>`
        SELECT schemaname || '.' || relname AS t, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_del AS del
        FROM pg_stat_user_tables ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC LIMIT 20`,
      (rows) => {
        for (const r of rows) {
          console.error(`    ${r.t.padEnd(40)} per order: ${(Number(r.ins) / orders).toFixed(1)} inserted, ${(Number(r.upd) / orders).toFixed(1)} updated, ${(Number(r.del) / orders).toFixed(1)} deleted`)
        }
      }
    ))

type Api = (route: string, init?: { json?: unknown; headers?: Record<string, string> }) => Promise<{ status: number; body: any }>

const client = (gateway: string, token?: string): Api => {
  const address = `203.0.113.${Math.floor(Math.random() * 254) + 1}`
  return async (route, init = {}) => {
    const headers: Record<string, string> = { "x-forwarded-for": address, ...init.headers }
    if (token) headers.authorization = `Bearer ${token}`
    if (init.json !== undefined) headers["content-type"] = "application/json"
    const response = await fetch(`${gateway}${route}`, {
      method: init.json !== undefined ? "POST" : "GET",
      headers,
      ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {})
    })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  }
}

const login = async (gateway: string, credentials: { email: string; password: string }) => {
  const answer = await client(gateway)("/v1/auth/login", { json: credentials })
  if (answer.status !== 200) throw new Error(`login: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.accessToken as string
}

interface Run {
  readonly confirmed: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly transactionsPerOrder: number
  /** CPU milliseconds per confirmed order: the servers' and this process's (the customers'). */
  readonly cpuPerOrder: { readonly servers: number; readonly customers: number }
}

/** Starts `layout` (process → modules) on a new database, places orders for SECONDS, stops. */
const orderFlow = async (adminUrl: string, layout: Record<string, string>): Promise<Run> => {
  const database = await Services.createDatabase(adminUrl)
  const ports = new Map<string, number>()
  for (const name of Object.keys(layout)) ports.set(name, await Processes.freePort())
  const split = Object.keys(layout).length > 1
  // Split, orders and shipping publish events to notifications in another process: through RabbitMQ.
  const rabbit = split ? await Services.findRabbit() : undefined
  if (rabbit !== undefined && !rabbit.ok) throw new Error(`the split layout needs RabbitMQ for its events: ${rabbit.reason}`)
  const broker = rabbit?.ok ? await Services.isolatedRabbit(rabbit.value) : undefined
  // A module hosted by several processes is one peer with several instances (`name=a|b`).
  const instances = new Map<string, Array<string>>()
  for (const [name, modules] of Object.entries(layout)) {
    for (const module of modules.split(",").filter((m) => m !== "gateway")) {
      instances.set(module, [...(instances.get(module) ?? []), `http://127.0.0.1:${ports.get(name)}`])
    }
  }
  const peers = [...instances].map(([module, urls]) => `${module}=${urls.join("|")}`).join(",")
  const servers = Object.keys(layout).map((name) =>
    Processes.spawnServer(ports.get(name)!, {
      DATABASE_URL: database.url,
      TESSERA_MODULES: layout[name]!,
      TESSERA_PEERS: split ? peers : "",
      TESSERA_SERVICE_SECRET: SECRET,
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_RATE_LIMIT: "1000000",
      TESSERA_TRUSTED_PROXIES: "1",
      ...(broker === undefined ? {} : { AMQP_URL: broker.url }),
      ...(process.env.BENCH_EXTRA_ENV ? JSON.parse(process.env.BENCH_EXTRA_ENV) : {})
    }, "node")
  )
  try {
    await Processes.waitAllReady(servers)
    const front = Object.keys(layout).findIndex((name) => layout[name] === "all" || layout[name]!.split(",").includes("gateway"))
    const gateway = servers[front]!.url
    const admin = client(gateway, await login(gateway, ADMIN))
    const product = await admin("/v1/products", { json: { sku: `BENCH-${Date.now()}`, name: "Bench", priceCents: 1999, currency: "EUR" } })
    if (product.status !== 201) throw new Error(`product: ${product.status} ${JSON.stringify(product.body)}`)
    const stocked = await admin(`/v1/products/${product.body.id}/stock`, { json: { quantity: 1_000_000 } })
    if (stocked.status !== 200) throw new Error(`restock: ${stocked.status} ${JSON.stringify(stocked.body)}`)
    const customers = await Promise.all(Array.from({ length: CALLERS }, async (_, i) => {
      const email = `bench-${i}-${Date.now()}@example.com`
      const password = "bench-customer-password"
      const registered = await client(gateway)("/v1/auth/register", { json: { email, password, name: "Bench" } })
      if (registered.status !== 201) throw new Error(`register: ${registered.status} ${JSON.stringify(registered.body)}`)
      return client(gateway, await login(gateway, { email, password }))
    }))
    const place = (api: Api) =>
      api("/v1/orders", {
        json: { items: [{ productId: product.body.id, quantity: 1 }], shippingAddress: ADDRESS, paymentToken: "tok_ok" },
        headers: { "idempotency-key": crypto.randomUUID() }
      }).then((answer) => {
        if (answer.status !== 202) throw new Error(`place: ${answer.status} ${JSON.stringify(answer.body)}`)
        return answer.body.id as string
      })
    // Warm-up: a few orders each, waited for.
    const warm = await Promise.all(customers.map(place))
    await settle(admin, warm, 60_000)

    const before = await commits(database.url)
    const serversCpu = () => servers.reduce((sum, server) => sum + cpuSeconds(server.process.pid!), 0)
    const cpuBefore = { servers: serversCpu(), customers: process.cpuUsage() }
    /** Every order placed, as it ended. */
    const orders: Array<any> = []
    const started = Date.now()
    const end = started + SECONDS * 1000
    // Each customer waits for its order to end before placing the next (a closed loop): an open
    // loop would only measure how long a growing backlog waits.
    await Promise.all(customers.map(async (api) => {
      while (Date.now() < end) {
        const id = await place(api)
        for (;;) {
          const answer = await api(`/v1/orders/${id}`)
          if (answer.status === 200 && answer.body.status !== "PENDING") {
            orders.push(answer.body)
            break
          }
          await sleep(POLL_MS)
        }
      }
    }))
    const after = await commits(database.url)
    const cpuAfter = { servers: serversCpu(), customers: process.cpuUsage(cpuBefore.customers) }
    if (process.env.BENCH_ORDER_TABLES) await tableWrites(database.url, orders.length)
    const confirmed = orders.filter((o) => o.status === "CONFIRMED")
    if (confirmed.length < orders.length) {
      console.error(`  ${orders.length - confirmed.length} of ${orders.length} orders did not confirm: ${[...new Set(orders.map((o) => o.failureReason))].join(", ")}`)
    }
    const latencies = confirmed.map((o) => Date.parse(o.updatedAt) - Date.parse(o.createdAt))
    const lastConfirmed = Math.max(...confirmed.map((o) => Date.parse(o.updatedAt)))
    return {
      confirmed: confirmed.length,
      perSecond: confirmed.length / ((lastConfirmed - started) / 1000),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      transactionsPerOrder: (after - before) / Math.max(1, confirmed.length),
      cpuPerOrder: {
        servers: (1000 * (cpuAfter.servers - cpuBefore.servers)) / Math.max(1, confirmed.length),
        customers: (cpuAfter.customers.user + cpuAfter.customers.system) / 1000 / Math.max(1, confirmed.length)
      }
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop()))
    await database.drop()
    await broker?.drop()
  }
}

/** Every order of `ids` once it has ended (the warm-up's). */
const settle = async (admin: Api, ids: ReadonlyArray<string>, ms: number) => {
  const deadline = Date.now() + ms
  const done = new Map<string, any>()
  while (Date.now() < deadline) {
    for (const id of ids) {
      if (done.has(id)) continue
      const answer = await admin(`/v1/orders/${id}`)
      if (answer.status === 200 && answer.body.status !== "PENDING") done.set(id, answer.body)
    }
    if (done.size === ids.length) return [...done.values()]
    await sleep(250)
  }
  throw new Error(`${ids.length - done.size} of ${ids.length} orders still PENDING after ${ms} ms`)
}

/**
 * The ceiling: `perOrder` write transactions per order (an INSERT and an UPDATE of one row each),
 * from CALLERS callers over a pool of POOL, for SECONDS: orders per second the database allows.
 */
const ceiling = async (adminUrl: string, perOrder: number) => {
  const database = await Services.createDatabase(adminUrl)
  try {
    return await withSql(database.url, POOL, (sql) =>
      Effect.gen(function*() {
        yield* sql`CREATE TABLE bench_rows (id bigserial PRIMARY KEY, payload text NOT NULL, status text NOT NULL)`
        const transaction = sql.withTransaction(
          Effect.flatMap(
            sql<{ id: string }>`INSERT INTO bench_rows (payload, status) VALUES ('order', 'PENDING') RETURNING id`,
            (rows) => sql`UPDATE bench_rows SET status = 'CONFIRMED' WHERE id = ${rows[0]!.id}`
          )
        )
        const started = Date.now()
        const end = started + SECONDS * 1000
        let done = 0
        yield* Effect.forEach(
          Array.from({ length: CALLERS }),
          () =>
            Effect.gen(function*() {
              while (Date.now() < end) {
                yield* transaction
                done++
              }
            }),
          { concurrency: "unbounded", discard: true }
        )
        return done / perOrder / ((Date.now() - started) / 1000)
      })
    )
  } finally {
    await database.drop()
  }
}

const main = async () => {
  if (ONLY !== undefined && ONLY !== "orders") return
  const postgres = await Services.findPostgres()
  if (!postgres.ok) {
    console.log(`order flow: skipped, no PostgreSQL (${postgres.reason})`)
    return
  }
  if (!Build.isFresh()) {
    console.error("building the release (dist/) ...")
    await Build.build()
  }
  console.log(
    `tessera order-flow bench: node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}, ${CALLERS} customers, ${SECONDS} s per run`
  )
  const layouts = {
    "one process": { all: "all" },
    split: {
      front: "gateway,identity,catalog,notifications",
      "inventory-1": "inventory",
      "inventory-2": "inventory",
      orders: "orders",
      payments: "payments",
      shipping: "shipping"
    }
  }
  const results: Record<string, Run & { ceiling: number }> = {}
  for (const [name, layout] of Object.entries(layouts)) {
    console.error(`order flow, ${name} ...`)
    const run = await orderFlow(postgres.value, layout)
    const top = await ceiling(postgres.value, run.transactionsPerOrder)
    results[name] = { ...run, ceiling: top }
    console.error(
      `  ${fmt(run.confirmed)} confirmed, ${fmt(run.perSecond, 1)} orders/s, p50 ${fmt(run.p50)} ms, p99 ${fmt(run.p99)} ms, ` +
        `${fmt(run.transactionsPerOrder, 1)} transactions per order; ceiling ${fmt(top, 1)} orders/s; ` +
        `CPU per order: servers ${fmt(run.cpuPerOrder.servers, 1)} ms, customers ${fmt(run.cpuPerOrder.customers, 1)} ms`
    )
  }
  const one = results["one process"]!
  const split = results.split!
  const rows = [
    ...Object.entries(results).map(([name, r]) => ({
      figure: `orders confirmed/s, ${name}, vs the database's ceiling`,
      value: (100 * r.perSecond) / r.ceiling,
      target: CEILING_TARGET,
      detail: `${fmt(r.perSecond, 1)} vs ${fmt(r.ceiling, 1)} orders/s (${fmt(r.transactionsPerOrder, 1)} tx/order); POST → CONFIRMED p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms`
    })),
    {
      figure: "orders confirmed/s, split vs one process",
      value: (100 * split.perSecond) / one.perSecond,
      target: SPLIT_TARGET,
      detail: `${fmt(split.perSecond, 1)} vs ${fmt(one.perSecond, 1)} orders/s`
    }
  ]
  console.log()
  for (const r of rows) {
    console.log(`${r.figure.padEnd(62)} ${fmt(r.value, 1).padStart(6)}%  >= ${r.target}%  ${r.value >= r.target ? "yes" : "MISSED"}  ${r.detail}`)
  }
  const missed = rows.filter((r) => r.value < r.target)
  console.log()
  console.log(missed.length === 0 ? `summary: all ${rows.length} order-flow goals met` : `summary: ${missed.length} of ${rows.length} order-flow goals MISSED`)
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
