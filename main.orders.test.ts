/**
 * The order flow end to end: real `tessera serve` processes of this build and the payment
 * provider simulator as a process of its own (`tessera psp-sim`, whose ledger the tests read),
 * driven over the gateway's REST API as customers and an admin would. The same tests run in one
 * process on PostgreSQL, with orders, payments and shipping each in a process of its own, and in
 * one process on embedded PostgreSQL; on Deno, in one process on embedded PostgreSQL and with
 * orders alone on Deno beside the rest on Node; every answer is checked against the OpenAPI document.
 * Where orders or shipping runs apart from notifications (which subscribes to their events), the
 * processes carry events through RabbitMQ (`AMQP_URL`, a virtual host per deployment); in one
 * process they need none.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, it } from "vitest"
import * as OrdersEndToEnd from "./main.orders.e2e.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const { settings } = OrdersEndToEnd
type Deployment = OrdersEndToEnd.Deployment

/** The provider simulator, as a process of its own: its URL, and the process to stop. */
const provider = async () => {
  const port = await Processes.freePort()
  const sim = Processes.spawnCommand(["psp-sim", "--port", String(port)], {})
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${url}/admin/ledger`).then((r) => r.ok, () => false)) return { url, sim }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`psp-sim did not start: ${sim.output()}`)
}


const postgres = await Services.findPostgres()
const rabbit = await Services.findRabbit()
/** Why a split deployment cannot run here: no PostgreSQL, or no RabbitMQ to carry its events. */
const splitUnavailable = !postgres.ok
  ? Services.unavailable("PostgreSQL", postgres.reason)
  : !rabbit.ok
  ? Services.unavailable("RabbitMQ", rabbit.reason)
  : undefined

/** Every module in one process on embedded PostgreSQL, on `runtime`. */
const embedded = async (runtime: Processes.Runtime): Promise<Deployment> => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-orders-e2e-"))
  const psp = await provider()
  const server = Processes.spawnServer(await Processes.freePort(), {
    ...settings,
    DATABASE_URL: undefined,
    TESSERA_DATA_DIR: dataDir,
    TESSERA_PAYMENT_PROVIDER_URL: psp.url
  }, runtime)
  await Processes.waitAllReady([server])
  return {
    gateway: server.url,
    provider: psp.url,
    servers: [server, psp.sim],
    hostsPayments: true,
    cleanup: async () => fs.rmSync(dataDir, { recursive: true, force: true })
  }
}

const topologies: Record<string, (() => Promise<Deployment>) | string> = {
  "one process on PostgreSQL": postgres.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const psp = await provider()
      const server = Processes.spawnServer(await Processes.freePort(), {
        ...settings,
        DATABASE_URL: db.url,
        TESSERA_MODULES: "all",
        TESSERA_PAYMENT_PROVIDER_URL: psp.url
      })
      await Processes.waitAllReady([server])
      return { gateway: server.url, provider: psp.url, servers: [server, psp.sim], hostsPayments: true, cleanup: db.drop }
    }
    : Services.unavailable("PostgreSQL", postgres.reason),

  "orders, payments and shipping each in a process of its own": splitUnavailable === undefined && postgres.ok && rabbit.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const broker = await Services.isolatedRabbit(rabbit.value)
      const [front, orders, payments, shipping] = await Promise.all([0, 1, 2, 3].map(() => Processes.freePort())) as [
        number,
        number,
        number,
        number
      ]
      const at = (port: number) => `http://127.0.0.1:${port}`
      const peers = `catalog=${at(front)},inventory=${at(front)},notifications=${at(front)},orders=${at(orders)},payments=${at(payments)},` +
        `shipping=${at(shipping)}`
      const psp = await provider()
      const env = (modules: string) => ({
        ...settings,
        DATABASE_URL: db.url,
        TESSERA_MODULES: modules,
        TESSERA_PEERS: peers,
        TESSERA_PAYMENT_PROVIDER_URL: psp.url,
        AMQP_URL: broker.url
      })
      const servers = [
        Processes.spawnServer(front, env("gateway,catalog,identity,inventory,notifications")),
        Processes.spawnServer(orders, env("orders")),
        Processes.spawnServer(payments, env("payments")),
        Processes.spawnServer(shipping, env("shipping"))
      ]
      await Processes.waitAllReady(servers)
      const cleanup = () => Promise.all([db.drop(), broker.drop()]).then(() => undefined)
      return { gateway: servers[0]!.url, provider: psp.url, servers: [...servers, psp.sim], hostsPayments: false, cleanup }
    }
    : splitUnavailable!,

  "one process on embedded PostgreSQL": () => embedded("node"),

  "one process on embedded PostgreSQL, on Deno": () => embedded("deno"),

  "orders on Deno, every other module on Node, on PostgreSQL": splitUnavailable === undefined && postgres.ok && rabbit.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const broker = await Services.isolatedRabbit(rabbit.value)
      const [front, orders] = await Promise.all([0, 1].map(() => Processes.freePort())) as [number, number]
      const at = (port: number) => `http://127.0.0.1:${port}`
      const peers = ["catalog", "inventory", "notifications", "payments", "shipping"].map((m) => `${m}=${at(front)}`)
        .concat(`orders=${at(orders)}`).join(",")
      const psp = await provider()
      const env = (modules: string) => ({
        ...settings,
        DATABASE_URL: db.url,
        TESSERA_MODULES: modules,
        TESSERA_PEERS: peers,
        TESSERA_PAYMENT_PROVIDER_URL: psp.url,
        AMQP_URL: broker.url
      })
      const servers = [
        Processes.spawnServer(front, env("gateway,catalog,identity,inventory,payments,shipping,notifications"), "node"),
        Processes.spawnServer(orders, env("orders"), "deno")
      ]
      await Processes.waitAllReady(servers)
      const cleanup = () => Promise.all([db.drop(), broker.drop()]).then(() => undefined)
      return { gateway: servers[0]!.url, provider: psp.url, servers: [...servers, psp.sim], hostsPayments: true, cleanup }
    }
    : splitUnavailable!
}

for (const [name, start] of Object.entries(topologies)) {
  if (typeof start === "string") describe.skip(name, () => it(start, () => {}))
  else OrdersEndToEnd.suite(name, start)
}
