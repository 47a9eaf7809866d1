/**
 * The order flow end to end (main.orders.e2e.ts): real `tessera serve` processes of this build
 * and the payment provider simulator as a process of its own (`tessera psp-sim`, whose ledger
 * the tests read), driven over the gateway's REST API as customers and an admin would. The same
 * tests run in one process on PostgreSQL, with orders, payments and shipping each in a process of
 * its own, and on two topology files of deploy/topologies started as `tessera up` starts them:
 * all-in-one on the embedded database, and node-and-deno (orders, payments, shipping and
 * inventory on Deno); main.containers.alone.test.ts runs per-module in containers.
 * Every answer is checked against the OpenAPI document. Where orders or shipping runs apart from
 * notifications (which subscribes to their events), the processes carry events through RabbitMQ
 * (`AMQP_URL`, a virtual host per deployment); in one process they need none.
 */
import { describe, it } from "vitest"
import * as OrdersEndToEnd from "./main.orders.e2e.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as TopologyProcesses from "./runtime/testing/TopologyProcesses.ts"
import { modules } from "./main.ts"
import * as ModuleFacts from "./runtime/deploy/ModuleFacts.ts"

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
const facts = ModuleFacts.fromModules(modules)
/** Why a split deployment cannot run here: no PostgreSQL, or no RabbitMQ to carry its events. */
const splitUnavailable = !postgres.ok
  ? Services.unavailable("PostgreSQL", postgres.reason)
  : !rabbit.ok
  ? Services.unavailable("RabbitMQ", rabbit.reason)
  : undefined

/** A topology file of deploy/topologies, started as `tessera up` starts it (TopologyProcesses.ts), with the simulator beside it. */
const fromFile = (name: string, runtime: Processes.Runtime = Processes.RUNTIME) => async (): Promise<Deployment> => {
  const psp = await provider()
  const started = await TopologyProcesses.start(name, facts, { ...settings, TESSERA_PAYMENT_PROVIDER_URL: psp.url }, runtime)
    .catch(async (error) => {
      await psp.sim.stop()
      throw error
    })
  return {
    gateway: started.serving("gateway"),
    provider: psp.url,
    servers: [...started.servers, psp.sim],
    hostsPayments: started.withGateway("payments"),
    cleanup: started.cleanup
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

  "all-in-one.json: one process on embedded PostgreSQL": fromFile("all-in-one.json", "node"),

  "node-and-deno.json: the order flow and inventory on Deno, the rest on Node": splitUnavailable ?? fromFile("node-and-deno.json")
}

for (const [name, start] of Object.entries(topologies)) {
  if (typeof start === "string") describe.skip(name, () => it(start, () => {}))
  else OrdersEndToEnd.suite(name, start)
}
