/**
 * `tessera topology check FILE`: whether a topology file can work with this build, and if not,
 * every reason, one line each. What it refuses:
 *
 * - process names used twice (each becomes a compose service, a Deployment, a log prefix);
 * - a name a process hosts that the build does not know, one named twice in a process, or
 *   `all` beside other names;
 * - the gateway placed nowhere, or a module of the build placed in no process;
 * - a call with no route: a process hosts a module whose `calls` name a module no process
 *   hosts, or hosts the gateway while a module that adds routes to it is hosted nowhere;
 * - an event with no route: with `broker: in-process` events go only between modules of one
 *   process, so a process hosting a publisher without its subscriber (or the reverse) is refused,
 *   as the process itself would refuse to start (messaging/Messaging.ts `problems`);
 * - `database: embedded` with more than one process or a process with replicas: the embedded
 *   database lives inside one process, so each would keep data of its own; `ownDatabase` with it;
 *   `ownDatabase` naming a module the build does not have, or one that keeps no data;
 * - a database clash. db/Database.ts gives each module the schema named after it and the role
 *   `tessera_<module>` on whatever URL it gets, so two different modules never clash on one
 *   database: what clashes is one module, one schema, reached through two databases. A module
 *   hosted by several processes (or replicas) must see the same database in each: else its rows
 *   split in two, its migrations and sagas run on each half, and its inbox lets events through
 *   twice. The check derives every instance's environment (Environments.ts) and refuses a
 *   module whose instances would open different databases;
 * - and last, each instance's environment is resolved as the process itself would at start
 *   (Topology.resolve): anything it would still refuse is reported, naming the process.
 */
import { FileSystem } from "@effect/platform"
import { Effect, Either, Schema } from "effect"
import * as Topology from "../Topology.ts"
import * as Environments from "./Environments.ts"
import type { ModuleFacts } from "./ModuleFacts.ts"
import * as TopologyFile from "./TopologyFile.ts"

/** A topology file refused: the file and every reason, one line each. */
export class TopologyRefused extends Schema.TaggedError<TopologyRefused>()("TopologyRefused", {
  file: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message() {
    return `${this.file} refused: ${this.problems.join("; ")}`
  }
}

const quote = (name: string) => JSON.stringify(name)

const list = (names: ReadonlyArray<string>) => names.join(", ")

/** Every reason `file` cannot work with a build of `modules`, one line each; empty when it can. */
export const problems = (file: TopologyFile.TopologyFile, modules: ReadonlyArray<ModuleFacts>): ReadonlyArray<string> => {
  const found: Array<string> = []
  const byName = new Map(modules.map((m) => [m.name, m] as const))
  const known = [Topology.GATEWAY, ...modules.map((m) => m.name)]

  // Names.
  const processNames = file.processes.map((p) => p.name)
  for (const name of new Set(processNames.filter((n, i) => processNames.indexOf(n) !== i))) {
    found.push(`process name ${quote(name)} is used by ${processNames.filter((n) => n === name).length} processes: each process needs a name of its own`)
  }
  for (const process of file.processes) {
    const unknown = process.modules.filter((n) => n !== Environments.ALL && !known.includes(n))
    if (unknown.length > 0) {
      found.push(`process ${quote(process.name)} hosts ${list(unknown.map(quote))}, unknown to this build (it has ${list(known)})`)
    }
    for (const name of new Set(process.modules.filter((n, i) => process.modules.indexOf(n) !== i))) {
      found.push(`process ${quote(process.name)} names ${quote(name)} twice`)
    }
    if (process.modules.includes(Environments.ALL) && process.modules.length > 1) {
      found.push(`process ${quote(process.name)} names "all" beside other modules: "all" already hosts every module and the gateway`)
    }
  }

  // Placement.
  const hostsOf = file.processes.map((p) => Environments.hostedBy(p, modules))
  const placed = new Set(hostsOf.flat())
  if (!placed.has(Topology.GATEWAY)) {
    found.push(`no process hosts the gateway: the public REST API would be served nowhere (add "gateway" to a process)`)
  }
  const nowhere = modules.filter((m) => !placed.has(m.name)).map((m) => m.name)
  for (const name of nowhere) found.push(`module ${name} is placed in no process: add it to one`)

  // Calls.
  for (const [index, process] of file.processes.entries()) {
    const hosts = hostsOf[index]!
    for (const m of modules) {
      if (!hosts.includes(m.name)) continue
      const unrouted = m.calls.filter((callee) => !placed.has(callee))
      if (unrouted.length > 0) {
        found.push(`process ${quote(process.name)}: ${m.name} calls ${list(unrouted)}, which no process hosts: the call has no route`)
      }
    }
    if (hosts.includes(Topology.GATEWAY)) {
      const unrouted = modules.filter((m) => m.exposesHttp && !placed.has(m.name)).map((m) => m.name)
      if (unrouted.length > 0) {
        found.push(`process ${quote(process.name)}: the gateway routes requests to ${list(unrouted)}, which no process hosts: those routes have no route`)
      }
    }
  }

  // Events.
  if (file.broker === "in-process") {
    for (const subscriber of modules) {
      const pairs = new Map<string, Array<string>>()
      for (const { event, publisher } of subscriber.subscribes) {
        if (!byName.has(publisher)) continue
        pairs.set(publisher, [...(pairs.get(publisher) ?? []), event])
      }
      for (const [publisher, events] of pairs) {
        for (const [index, process] of file.processes.entries()) {
          const hosts = hostsOf[index]!
          if (hosts.includes(publisher) === hosts.includes(subscriber.name)) continue
          const [here, missing] = hosts.includes(publisher) ? [publisher, subscriber.name] : [subscriber.name, publisher]
          found.push(
            `process ${quote(process.name)} hosts ${here} without ${missing}, and ${subscriber.name} subscribes to ${
              list(events)
            } of ${publisher}: with broker "in-process" events go only within a process: use broker "rabbitmq", or host ${publisher} and ${subscriber.name} together`
          )
        }
      }
    }
  }

  // Databases.
  if (file.database === "embedded") {
    if (file.processes.length > 1) {
      found.push(
        `database "embedded" lives inside one process, but this topology has ${file.processes.length} (${
          list(processNames)
        }): each would keep data of its own; use database "postgres"`
      )
    }
    for (const process of file.processes.filter((p) => p.replicas > 1)) {
      found.push(
        `database "embedded" lives inside one process, but process ${quote(process.name)} has ${process.replicas} replicas: each would keep data of its own; use database "postgres"`
      )
    }
    if (file.ownDatabase.length > 0) {
      found.push(`ownDatabase (${list(file.ownDatabase)}) needs database "postgres": the embedded database is one per process`)
    }
  }
  for (const name of file.ownDatabase) {
    const m = byName.get(name)
    if (m === undefined) found.push(`ownDatabase names ${quote(name)}, unknown to this build`)
    else if (!m.database) found.push(`ownDatabase names ${name}, which keeps no data`)
  }
  for (const name of new Set(file.ownDatabase.filter((n, i) => file.ownDatabase.indexOf(n) !== i))) {
    found.push(`ownDatabase names ${name} twice`)
  }

  // Every instance's environment, as the tools would derive it (names must be unique to tell
  // the processes apart).
  if (new Set(processNames).size < processNames.length) return found
  const environments = Environments.ofTopology(file, modules, symbolic)
  // Modules whose instances would open the same several databases are named together.
  const clashes = new Map<string, Array<string>>()
  for (const m of modules.filter((m) => m.database)) {
    const databases = new Map<string, Array<string>>()
    for (const instance of environments.filter((i) => i.hosts.includes(m.name))) {
      const own = instance.env[Environments.ownDatabaseVariable(m.name)]
      const where = own ?? instance.env.DATABASE_URL ?? `the embedded database of ${instance.name}`
      databases.set(where, [...(databases.get(where) ?? []), instance.name])
    }
    if (databases.size > 1) {
      const where = [...databases].map(([database, names]) => `${database} for ${list(names)}`).join("; ")
      clashes.set(where, [...(clashes.get(where) ?? []), m.name])
    }
  }
  for (const [where, names] of clashes) {
    found.push(
      `${names.length === 1 ? `module ${names[0]}` : `modules ${list(names)}`} would keep data in several databases (${where}): every instance of a module must open the same database, where its schema is`
    )
  }

  // What each process would still refuse at start.
  if (found.length === 0) {
    const nodes = modules.map((m) => ({ name: m.name, calls: m.calls, exposesHttp: m.exposesHttp }))
    const seen = new Set<string>()
    for (const instance of environments) {
      const resolved = Topology.resolve(nodes, { hosted: instance.env.TESSERA_MODULES ?? "", peers: instance.env.TESSERA_PEERS ?? "" })
      if (Either.isLeft(resolved) && !seen.has(instance.process)) {
        seen.add(instance.process)
        found.push(`process ${quote(instance.process)} would refuse to start: ${resolved.left.message}`)
      }
    }
  }
  return found
}

/** Stand-in addresses and databases: enough to compare what each instance would reach, and to name it. */
const symbolic: Environments.Addressing = {
  port: () => 8080,
  location: (_module, served) => served.map((i) => `http://${i.process}-${i.replica}:8080`).join("|"),
  databaseUrl: "the shared database",
  ownDatabaseUrl: (module) => `${module}'s own database`,
  amqpUrl: "amqp://broker"
}

/**
 * Reads, decodes and checks the topology file at `path` against a build of `modules`: the file,
 * or every reason it is refused (a file that does not decode gives one, naming what is wrong).
 */
export const load = (path: string, modules: ReadonlyArray<ModuleFacts>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((error) => new TopologyRefused({ file: path, problems: [`cannot be read: ${error.message}`] }))
    )
    const file = yield* TopologyFile.decode(path, text).pipe(
      Effect.mapError((error) => new TopologyRefused({ file: path, problems: [error.message] }))
    )
    const found = problems(file, modules)
    if (found.length > 0) return yield* Effect.fail(new TopologyRefused({ file: path, problems: found }))
    return file
  })

/** What a topology that passed looks like: one line for the file, one per process. */
export const summary = (path: string, file: TopologyFile.TopologyFile, modules: ReadonlyArray<ModuleFacts>): string => {
  const instances = file.processes.reduce((sum, p) => sum + p.replicas, 0)
  const width = Math.max(...file.processes.map((p) => p.name.length)) + 2
  return [
    `${path}: ${file.name} fits this build: ${file.processes.length} process(es), ${instances} instance(s), database ${file.database}${
      file.ownDatabase.length > 0 ? ` (${list(file.ownDatabase)} on databases of their own)` : ""
    }, broker ${file.broker}`,
    ...file.processes.map((p) =>
      `  ${p.name.padEnd(width)}${p.runtime.padEnd(6)}x${String(p.replicas).padEnd(4)}${list(Environments.hostedBy(p, modules))}`
    )
  ].join("\n")
}
