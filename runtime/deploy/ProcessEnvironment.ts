/**
 * The environment of one instance of a topology's process (`TopologyFile.ts`): what tells the
 * one image where it stands. Compose, Kubernetes and local processes differ only in how they
 * name hosts (`Naming`) and how they hand secrets over, so all three take their variables from
 * here and give every process the same names.
 *
 * `processEnvironment` is the seam the deploy renderer calls; `tessera up` and `topology check`
 * derive the same from the same file.
 */
import type { Module } from "../Module.ts"
import * as Settings from "../Settings.ts"
import { GATEWAY } from "../Topology.ts"
import type { Process, TopologyFile } from "./TopologyFile.ts"

/** What the environment needs to know of a module of the build. */
export interface ModuleFacts {
  readonly name: string
  readonly calls: ReadonlyArray<string>
  readonly exposesHttp: boolean
  readonly database: boolean
  /** It publishes or subscribes to events (so needs the broker when split). */
  readonly events: boolean
  /** Its own settings that are secret (`display: "secret"`), by variable name. */
  readonly secrets: ReadonlyArray<string>
}

export const facts = (modules: ReadonlyArray<Module.Any>): ReadonlyArray<ModuleFacts> =>
  modules.map((m) => ({
    name: m.name,
    calls: m.calls.map((c) => c.module),
    exposesHttp: m.http !== undefined,
    database: m.database,
    events: m.publishes.length + m.subscribes.length > 0,
    secrets: m.settings.filter((s) => s.display === "secret").map((s) => s.name)
  }))

/**
 * A value, or a secret every renderer hands over its own way (a file in compose, a Secret's key
 * in Kubernetes). `key` names it in both; `optional`: the process starts without it.
 */
export type Value =
  | { readonly _tag: "Plain"; readonly value: string }
  | { readonly _tag: "Secret"; readonly key: string; readonly optional: boolean }

/** How a deployment names the instances of its processes. */
export interface Naming {
  /** The port an instance listens on (`PORT`). */
  readonly port: (process: Process, instance: number) => number
  /** Where `module`, hosted by every instance of `host`, is reached: a `TESSERA_PEERS` location. */
  readonly location: (module: string, host: Process) => string
}

/** The port every container listens on. */
export const CONTAINER_PORT = 8080

/** The key of a secret in a Secret or the name of its file: `TESSERA_ADMIN_PASSWORD` → `admin-password`. */
export const secretKey = (variable: string) => variable.replace(/^TESSERA_/, "").toLowerCase().replaceAll("_", "-")

/** The processes hosting each module (the gateway included). */
export const hosts = (file: TopologyFile): ReadonlyMap<string, Process> => {
  const found = new Map<string, Process>()
  for (const process of file.processes) for (const m of process.modules) if (!found.has(m)) found.set(m, process)
  return found
}

/** The modules `process` reaches in other processes: what its hosted modules call, and what the gateway serves. */
export const needs = (modules: ReadonlyArray<ModuleFacts>, process: Process): ReadonlyArray<string> => {
  const hosted = new Set(process.modules)
  const needed = new Set<string>()
  for (const m of modules) {
    if (hosted.has(m.name)) for (const callee of m.calls) needed.add(callee)
    if (hosted.has(GATEWAY) && m.exposesHttp) needed.add(m.name)
  }
  return modules.map((m) => m.name).filter((name) => needed.has(name) && !hosted.has(name))
}

/**
 * Every variable an instance of `process` is given, in a stable order: `PORT`, `TESSERA_MODULES`,
 * `TESSERA_PEERS` (the modules it reaches elsewhere), `DATABASE_URL` and
 * `TESSERA_<MODULE>_DATABASE_URL` (for what it hosts), `AMQP_URL` (when it hosts a module with
 * events and the broker is RabbitMQ), `TESSERA_SERVICE_SECRET` (when it calls or is called by
 * another process), and the secret settings of its modules.
 */
export const processEnvironment = (
  file: TopologyFile,
  modules: ReadonlyArray<ModuleFacts>,
  process: Process,
  instance: number,
  naming: Naming
): ReadonlyArray<readonly [string, Value]> => {
  const plain = (value: string): Value => ({ _tag: "Plain", value })
  const secret = (variable: string, optional = false): readonly [string, Value] => [variable, { _tag: "Secret", key: secretKey(variable), optional }]
  const placed = hosts(file)
  const hosted = modules.filter((m) => process.modules.includes(m.name))
  const peers = needs(modules, process).flatMap((m) => {
    const host = placed.get(m)
    return host === undefined ? [] : [`${m}=${naming.location(m, host)}`]
  })
  const calledFromElsewhere = file.processes.some((other) =>
    other !== process && needs(modules, other).some((m) => process.modules.includes(m))
  )
  const own = new Set(file.ownDatabase)
  const env: Array<readonly [string, Value]> = [
    [Settings.port.name, plain(String(naming.port(process, instance)))],
    ["TESSERA_MODULES", plain(process.modules.join(","))]
  ]
  if (peers.length > 0) env.push(["TESSERA_PEERS", plain(peers.join(","))])
  if (file.database === "postgres" && hosted.some((m) => m.database && !own.has(m.name))) env.push(secret(Settings.databaseUrl.name))
  for (const m of hosted) if (m.database && own.has(m.name)) env.push(secret(Settings.moduleDatabaseUrl(m.name).name))
  if (file.broker === "rabbitmq" && hosted.some((m) => m.events)) env.push(secret(Settings.amqpUrl.name))
  if (peers.length > 0 || calledFromElsewhere) env.push(secret(Settings.serviceSecret.name))
  for (const m of hosted) for (const variable of m.secrets) env.push(secret(variable, true))
  return env
}

/** Processes started on this machine (`tessera up`): instance after instance on ports from `base`. */
export const localNaming = (file: TopologyFile, base = 8080): Naming => {
  const first = new Map<Process, number>()
  let next = base
  for (const process of file.processes) {
    first.set(process, next)
    next += process.replicas
  }
  const port = (process: Process, instance: number) => first.get(process)! + instance
  return {
    port,
    location: (_module, host) => Array.from({ length: host.replicas }, (_, i) => `http://127.0.0.1:${port(host, i)}`).join("|")
  }
}
