/**
 * The environment of every process of a topology file: what `tessera up` starts each local
 * process with, and what `tessera deploy render` writes into compose and Kubernetes. A process
 * reads nothing else of the file (TopologyFile.ts), so this derivation is the whole contract
 * between a topology and the processes that make it.
 *
 * Where instances are reached differs by target (a local port each; a compose service name; a
 * Kubernetes headless Service), so that part is a parameter, `Addressing`; the rest (which
 * modules each process hosts, which peers it needs, which databases and broker it gets) is
 * derived here, once, for every target.
 */
import * as Settings from "../Settings.ts"
import * as Topology from "../Topology.ts"
import type { ModuleFacts } from "./ModuleFacts.ts"
import type { Process, TopologyFile } from "./TopologyFile.ts"

/** In a process's `modules`, alone: every module of the build and the gateway (`TESSERA_MODULES=all`). */
export const ALL = "all"

/** One running copy of a process of the file. */
export interface Instance {
  readonly process: string
  /** 0 to replicas - 1. */
  readonly replica: number
  /** Its place among every instance of the topology, in file order from 0 (local ports count from it). */
  readonly index: number
}

/** An instance and the port it listens on. */
export interface Listening extends Instance {
  readonly port: number
}

/** Where instances, databases and the broker are, as seen from the processes of one target. */
export interface Addressing {
  /** The port an instance listens on (`PORT`). */
  readonly port: (instance: Instance) => number
  /**
   * Where another process reaches `module`, served by `instances` (every instance of every
   * process hosting it): a location as `TESSERA_PEERS` takes it, several URLs separated by `|`
   * or one `dns://host:port`.
   */
  readonly location: (module: string, instances: ReadonlyArray<Listening>) => string
  /** The admin URL of the PostgreSQL every module shares (`DATABASE_URL`), for `database: postgres`. */
  readonly databaseUrl: string
  /** The admin URL of a module's own database (`TESSERA_<MODULE>_DATABASE_URL`), for `ownDatabase`. */
  readonly ownDatabaseUrl: (module: string) => string
  /** RabbitMQ (`AMQP_URL`), for `broker: rabbitmq`. */
  readonly amqpUrl: string
}

/** What one instance runs with. */
export interface InstanceEnvironment extends Listening {
  /** `<process>.<replica>`: how logs and reports name it. */
  readonly name: string
  readonly runtime: "node" | "deno"
  /** What it hosts, `gateway` first when it does, then modules in the build's order. */
  readonly hosts: ReadonlyArray<string>
  /**
   * The variables the topology decides: `PORT`, `TESSERA_MODULES`, `TESSERA_PEERS` (when it
   * needs a module hosted elsewhere), `DATABASE_URL` (when a hosted module keeps its data on the
   * shared server), `TESSERA_<MODULE>_DATABASE_URL` (each hosted module with a database of its
   * own), `AMQP_URL` (broker rabbitmq, when a hosted module publishes or subscribes). Nothing
   * else: secrets and tuning come from the target.
   */
  readonly env: Readonly<Record<string, string>>
}

/** `TESSERA_<MODULE>_DATABASE_URL` of `module`. */
export const ownDatabaseVariable = (module: string) => Settings.moduleDatabaseUrl(module).name

/** Every variable `ofTopology` may set for a build: a target clears these before setting its own. */
export const variables = (modules: ReadonlyArray<ModuleFacts>): ReadonlyArray<string> => [
  Settings.port.name,
  "TESSERA_MODULES",
  "TESSERA_PEERS",
  Settings.databaseUrl.name,
  ...modules.filter((m) => m.database).map((m) => ownDatabaseVariable(m.name)),
  Settings.amqpUrl.name
]

/** What a process hosts, `all` spelt out: `gateway` first if named, then modules in the build's order. */
export const hostedBy = (process: Process, modules: ReadonlyArray<ModuleFacts>): ReadonlyArray<string> => {
  const all = process.modules.includes(ALL)
  return [
    ...(all || process.modules.includes(Topology.GATEWAY) ? [Topology.GATEWAY] : []),
    ...modules.map((m) => m.name).filter((name) => all || process.modules.includes(name))
  ]
}

/** Every instance of the file, in file order. */
export const instances = (file: TopologyFile): ReadonlyArray<Instance> => {
  const found: Array<Instance> = []
  for (const process of file.processes) {
    for (let replica = 0; replica < process.replicas; replica++) {
      found.push({ process: process.name, replica, index: found.length })
    }
  }
  return found
}

/**
 * The modules a process needs that it does not host: those its modules call and, when it hosts
 * the gateway, those that add routes to it (as `Topology.resolve` asks them), in the build's order.
 */
export const needs = (hosts: ReadonlyArray<string>, modules: ReadonlyArray<ModuleFacts>): ReadonlyArray<string> => {
  const wanted = new Set<string>()
  for (const m of modules) {
    if (hosts.includes(m.name)) for (const callee of m.calls) wanted.add(callee)
    if (hosts.includes(Topology.GATEWAY) && m.exposesHttp) wanted.add(m.name)
  }
  return modules.map((m) => m.name).filter((name) => wanted.has(name) && !hosts.includes(name))
}

/**
 * The environment of every instance of `file` for a build with `modules`, addressed by
 * `addressing`, in file order. A module hosted nowhere is left out of `TESSERA_PEERS` (the
 * process would refuse to start, naming it): run `TopologyCheck.problems` first.
 */
export const ofTopology = (
  file: TopologyFile,
  modules: ReadonlyArray<ModuleFacts>,
  addressing: Addressing
): ReadonlyArray<InstanceEnvironment> => {
  const listening = instances(file).map((instance): Listening => ({ ...instance, port: addressing.port(instance) }))
  const byProcess = new Map(file.processes.map((p) => [p.name, p] as const))
  const hostsOf = new Map(file.processes.map((p) => [p.name, hostedBy(p, modules)] as const))
  const servedBy = (module: string) => listening.filter((i) => hostsOf.get(i.process)?.includes(module) === true)
  const usesEvents = (m: ModuleFacts) => m.publishes.length > 0 || m.subscribes.length > 0

  return listening.map((instance): InstanceEnvironment => {
    const process = byProcess.get(instance.process)!
    const hosts = hostsOf.get(instance.process)!
    const hosted = modules.filter((m) => hosts.includes(m.name))
    const env: Record<string, string> = {
      [Settings.port.name]: String(instance.port),
      TESSERA_MODULES: process.modules.includes(ALL) ? ALL : hosts.join(",")
    }
    const peers = needs(hosts, modules).flatMap((module) => {
      const served = servedBy(module)
      return served.length === 0 ? [] : [`${module}=${addressing.location(module, served)}`]
    })
    if (peers.length > 0) env.TESSERA_PEERS = peers.join(",")
    if (file.database === "postgres") {
      const withData = hosted.filter((m) => m.database)
      if (withData.some((m) => !file.ownDatabase.includes(m.name))) env[Settings.databaseUrl.name] = addressing.databaseUrl
      for (const m of withData) {
        if (file.ownDatabase.includes(m.name)) env[ownDatabaseVariable(m.name)] = addressing.ownDatabaseUrl(m.name)
      }
    }
    if (file.broker === "rabbitmq" && hosted.some(usesEvents)) env[Settings.amqpUrl.name] = addressing.amqpUrl
    return { ...instance, name: `${instance.process}.${instance.replica}`, runtime: process.runtime, hosts, env }
  })
}

/**
 * A module's own database on the server of `adminUrl`: the same server and credentials, the
 * database `<database>_<module>` (what `tessera up` creates for `ownDatabase`).
 */
export const ownDatabaseOnServer = (adminUrl: string, module: string): string => {
  const url = new URL(adminUrl)
  const database = decodeURIComponent(url.pathname.replace(/^\//, "")) || "postgres"
  url.pathname = `/${encodeURIComponent(`${database}_${module}`)}`
  return url.toString()
}

/**
 * This machine: instance `index` listens on `portBase + index` of `host`, and a module's
 * location lists every instance serving it (`http://127.0.0.1:8101|http://127.0.0.1:8102`).
 * Own databases sit beside `databaseUrl`'s on its server (`ownDatabaseOnServer`).
 */
export const local = (options: {
  readonly portBase: number
  readonly host?: string
  readonly databaseUrl?: string
  readonly amqpUrl?: string
}): Addressing => {
  const host = options.host ?? "127.0.0.1"
  const databaseUrl = options.databaseUrl ?? ""
  return {
    port: (instance) => options.portBase + instance.index,
    location: (_module, served) => served.map((i) => `http://${host}:${i.port}`).join("|"),
    databaseUrl,
    ownDatabaseUrl: (module) => databaseUrl === "" ? "" : ownDatabaseOnServer(databaseUrl, module),
    amqpUrl: options.amqpUrl ?? ""
  }
}
