/**
 * A topology file of deploy/topologies started here as `tessera up` starts it, for the
 * end-to-end suites: every instance a `tessera serve` process of this build with the environment
 * the file gives it (`Environments.ofTopology`), on a fresh database (and databases of their own
 * where the file says so) and a RabbitMQ virtual host of its own. Each process can be stopped and
 * started again on its port.
 */
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Environments from "../deploy/Environments.ts"
import type { ModuleFacts } from "../deploy/ModuleFacts.ts"
import * as TopologyCheck from "../deploy/TopologyCheck.ts"
import * as Processes from "./Processes.ts"
import * as Services from "./Services.ts"

const directory = path.join(import.meta.dirname, "..", "..", "deploy", "topologies")

/** A process of the topology that can be stopped and started again. */
export interface Restartable {
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
}

export interface Started {
  /** Every instance's process, in the file's order (a restarted one replaces its entry). */
  readonly servers: Array<Processes.Server>
  /** The URL of the (first) instance hosting `module`. */
  readonly serving: (module: string) => string
  /** Where the gateway's process says `module` runs: `local`, or the location of every instance serving it. */
  readonly route: (module: string) => string
  /** Whether the gateway's process hosts `module`. */
  readonly withGateway: (module: string) => boolean
  /** The processes of one replica that host `module` alone, by module. */
  readonly alone: ReadonlyMap<string, Restartable>
  readonly cleanup: () => Promise<void>
}

/**
 * Starts `name` (a file of deploy/topologies) with `facts` (this build's modules), every
 * process given `settings` too. Its processes run on the file's runtimes; those on Node run on
 * `runtime`. Needs PostgreSQL when the file's database is `postgres`, RabbitMQ when its broker
 * is `rabbitmq`.
 */
export const start = async (
  name: string,
  facts: ReadonlyArray<ModuleFacts>,
  settings: Readonly<Record<string, string | undefined>>,
  runtime: Processes.Runtime = Processes.RUNTIME
): Promise<Started> => {
  const file = await Effect.runPromise(TopologyCheck.load(path.join(directory, name), facts).pipe(Effect.provide(NodeContext.layer)))
  const drops: Array<() => Promise<void>> = []
  const cleanup = async () => {
    for (const drop of drops.reverse()) await drop()
  }
  let databaseUrl = ""
  const own = new Map<string, string>()
  if (file.database === "postgres") {
    const postgres = await Services.findPostgres()
    if (!postgres.ok) throw new Error(postgres.reason)
    const shared = await Services.createDatabase(postgres.value)
    drops.push(shared.drop)
    databaseUrl = shared.url
    for (const module of file.ownDatabase) {
      const database = await Services.createDatabase(postgres.value)
      drops.push(database.drop)
      own.set(module, database.url)
    }
  }
  let amqpUrl = ""
  if (file.broker === "rabbitmq") {
    const rabbit = await Services.findRabbit()
    if (!rabbit.ok) throw new Error(rabbit.reason)
    const broker = await Services.isolatedRabbit(rabbit.value)
    drops.push(broker.drop)
    amqpUrl = broker.url
  }
  const base = await Processes.freePorts(Environments.instances(file).length)
  const local = Environments.local({ portBase: base, databaseUrl, amqpUrl })
  const environments = Environments.ofTopology(file, facts, { ...local, ownDatabaseUrl: (module) => own.get(module) ?? "" })
  const servers: Array<Processes.Server> = []
  const alone = new Map<string, Restartable>()
  for (const instance of environments) {
    let env: Record<string, string | undefined> = { ...settings, ...instance.env }
    if (file.database === "embedded") {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-topology-"))
      drops.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }))
      env = { ...env, DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir }
    }
    const on = instance.runtime === "deno" ? "deno" : runtime
    servers[instance.index] = Processes.spawnServer(instance.port, env, on)
    const replicas = file.processes.find((p) => p.name === instance.process)!.replicas
    if (instance.hosts.length === 1 && replicas === 1) {
      alone.set(instance.hosts[0]!, {
        stop: async () => void (await servers[instance.index]!.stop()),
        start: async () => {
          servers[instance.index] = Processes.spawnServer(instance.port, env, on)
          await Processes.waitAllReady([servers[instance.index]!])
        }
      })
    }
  }
  try {
    await Processes.waitAllReady(servers)
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop()))
    await cleanup()
    throw error
  }
  const hosting = (module: string) => {
    const found = environments.find((i) => i.hosts.includes(module))
    if (found === undefined) throw new Error(`${name} places ${module} in no process`)
    return found
  }
  const front = hosting("gateway")
  const peers = new Map((front.env.TESSERA_PEERS ?? "").split(",").map((entry) => entry.split("=") as [string, string]))
  return {
    servers,
    serving: (module) => servers[hosting(module).index]!.url,
    route: (module) => front.hosts.includes(module) ? "local" : peers.get(module) ?? "",
    withGateway: (module) => front.hosts.includes(module),
    alone,
    cleanup
  }
}
