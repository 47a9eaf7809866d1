/**
 * A rolling restart, as an operator or Kubernetes does one: a split topology where every process
 * runs as two instances (two fronts with the gateway, two each of orders, payments and shipping)
 * is restarted one process at a time (SIGTERM, wait for it to exit, start it again on its port,
 * wait until it is ready) under a steady stream of orders from customers who spread their
 * requests over both gateways and ask again with the same Idempotency-Key when an answer is a
 * 5xx or none, as clients behind a load balancer do.
 *
 * No order fails (every one ends CONFIRMED: stock is ample and every payment good), none is lost
 * (every accepted order ends) or doubled (one charge each, one unit sold each). The time from
 * POST to CONFIRMED during the restarts beside the steady run's is printed here and measured in
 * `npm run bench`, not asserted: timings do not belong in tests; so is each process's time to
 * exit and to be ready again, which is most of this suite's (three customers and a short steady
 * phase keep the rest small).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as Shop from "./runtime/testing/Shop.ts"

const ADMIN = { email: "admin@tessera.test", password: "admin-password-rolling" }
const CUSTOMERS = 3
const STEADY_MS = 4_000
const STOCKED = 100_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const postgres = await Services.findPostgres()
const rabbit = await Services.findRabbit()

/** One process of the topology: what it hosts, on its own port, restartable. */
interface Member {
  readonly name: string
  readonly modules: string
  readonly port: number
  server: Processes.Server
}

describe("a rolling restart of a split topology under a steady order load", () => {
  let drop: () => Promise<void>
  let providerUrl: string
  let shop: Shop.Shop
  let env: (modules: string) => Record<string, string>
  const members: Array<Member> = []
  let provider: Processes.Server

  beforeAll(async () => {
    if (!postgres.ok || !rabbit.ok) return
    const db = await Services.createDatabase(postgres.value)
    const broker = await Services.isolatedRabbit(rabbit.value)
    drop = () => Promise.all([db.drop(), broker.drop()]).then(() => undefined)
    const layout: ReadonlyArray<[string, string]> = [
      ["front-1", "gateway,identity,catalog,inventory,notifications"],
      ["front-2", "gateway,identity,catalog,inventory,notifications"],
      ["orders-1", "orders"],
      ["orders-2", "orders"],
      ["payments-1", "payments"],
      ["payments-2", "payments"],
      ["shipping-1", "shipping"],
      ["shipping-2", "shipping"]
    ]
    const ports = await Promise.all(layout.map(() => Processes.freePort()))
    const simAt = await Processes.freePort()
    const at = (port: number) => `http://127.0.0.1:${port}`
    providerUrl = at(simAt)
    provider = Processes.spawnCommand(["psp-sim", "--port", String(simAt)], {})
    // Every module's instances, one peer each (`name=a|b`); a process ignores the peers it hosts.
    const instances = new Map<string, Array<string>>()
    layout.forEach(([, modules], i) => {
      for (const module of modules.split(",").filter((m) => m !== "gateway")) {
        instances.set(module, [...(instances.get(module) ?? []), at(ports[i]!)])
      }
    })
    const peers = [...instances].map(([module, urls]) => `${module}=${urls.join("|")}`).join(",")
    env = (modules) => ({
      DATABASE_URL: db.url,
      AMQP_URL: broker.url,
      TESSERA_MODULES: modules,
      TESSERA_PEERS: peers,
      TESSERA_PAYMENT_PROVIDER_URL: providerUrl,
      TESSERA_SERVICE_SECRET: "rolling-restart-service-secret-rolling",
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_RATE_LIMIT: "100000",
      TESSERA_TRUSTED_PROXIES: "1",
      ...(process.env.ROLLING_LOG_LEVEL ? { LOG_LEVEL: process.env.ROLLING_LOG_LEVEL } : {})
    })
    layout.forEach(([name, modules], i) =>
      members.push({ name, modules, port: ports[i]!, server: Processes.spawnServer(ports[i]!, env(modules)) })
    )
    await Processes.waitAllReady(members.map((m) => m.server))
    shop = Shop.make(members.filter((m) => m.modules.includes("gateway")).map((m) => at(m.port)))
  }, 240_000)

  afterAll(async () => {
    await Promise.all([provider, ...members.map((m) => m.server)].map((s) => s?.stop()))
    await drop?.()
  })

  it("loses, doubles and fails no order while every process is restarted in turn", async () => {
    const admin = await Shop.login(shop, ADMIN)
    const productId = await Shop.product(shop, admin, STOCKED)
    const buyers = await Promise.all(Array.from({ length: CUSTOMERS }, (_, i) => Shop.customer(shop, `rolling-${i}`)))

    /** Every order as it ended, with its time from POST to its end and whether restarts were under way. */
    const orders: Array<{ readonly order: any; readonly ms: number; readonly rolling: boolean }> = []
    let rolling = false
    let stop = false
    const load = Promise.all(buyers.map(async (buyer, b) => {
      for (let i = 0; !stop; i++) {
        const during = rolling
        const started = Date.now()
        const id = await Shop.place(shop, buyer, productId, `rolling-${b}-${i}`)
        const order = await Shop.ended(shop, buyer, id)
        orders.push({ order, ms: Date.now() - started, rolling: during || rolling })
      }
    }))

    await sleep(STEADY_MS)
    const steadyRefused = shop.refused()
    rolling = true
    /** Per process: how long it took to exit on SIGTERM, then to be ready again (ms). */
    const restarts: Array<string> = []
    for (const member of members) {
      const stopping = Date.now()
      const code = await member.server.stop()
      expect(code, `${member.name} exits cleanly on SIGTERM:\n${member.server.output()}`).toBe(0)
      const starting = Date.now()
      member.server = Processes.spawnServer(member.port, env(member.modules))
      await Processes.waitReady(member.server)
      restarts.push(`${member.name} ${starting - stopping}+${Date.now() - starting}`)
    }
    rolling = false
    await sleep(2_000)
    stop = true
    await load

    const final = orders.map((o) => o.order)
    const failed = final.filter((o) => o.status !== "CONFIRMED")
    expect(failed, "no order fails").toEqual([])
    expect(new Set(final.map((o) => o.id)).size, "no order doubled").toBe(final.length)
    await Shop.expectSettled(shop, { admin, productId, stocked: STOCKED, final, providerUrl })
    const steady = orders.filter((o) => !o.rolling).map((o) => o.ms)
    const during = orders.filter((o) => o.rolling).map((o) => o.ms)
    expect(during.length, "orders were placed while processes restarted").toBeGreaterThan(0)
    console.log(
      `rolling restart: ${final.length} orders confirmed (${steady.length} steady, ${during.length} during restarts); ` +
        `POST → CONFIRMED p99 steady ${Shop.quantile(steady, 0.99)} ms, during restarts ${Shop.quantile(during, 0.99)} ms; ` +
        `answers asked again: ${steadyRefused} steady, ${shop.refused() - steadyRefused} during restarts; ` +
        `ms to exit + to be ready again: ${restarts.join(", ")}`
    )
  }, 420_000)
})
