/**
 * Which modules this process hosts and where the others are.
 *
 * `TESSERA_MODULES` (comma list, default `all`) names what runs here; `gateway` is one of the
 * names. `TESSERA_PEERS` (`inventory=http://10.0.0.7:8080,catalog=...`) says where the rest run.
 * A process whose modules need a module that is neither hosted nor located refuses to start.
 */
import { Data, Effect, Either, Option } from "effect"
import * as Setting from "./Setting.ts"

export const GATEWAY = "gateway"

/** What the topology needs to know of a module: its name and the modules it calls. */
export interface ModuleNode {
  readonly name: string
  readonly calls: ReadonlyArray<string>
  readonly exposesHttp: boolean
}

export type Location =
  | { readonly _tag: "Local" }
  | { readonly _tag: "Remote"; readonly url: string }

export interface Topology {
  /** Modules hosted by this process, in declaration order. */
  readonly hosted: ReadonlyArray<string>
  /** Whether this process serves the public REST API. */
  readonly gateway: boolean
  /** Where every module this process needs runs: hosted ones are `Local`. */
  readonly locations: ReadonlyMap<string, Location>
  /** Every peer URL given, needed or not (`topology` prints them). */
  readonly peers: ReadonlyMap<string, string>
}

export class TopologyError extends Data.TaggedError("TopologyError")<{ readonly message: string }> {}

/** Parses `TESSERA_PEERS`: `name=url` pairs, comma separated. */
export const parsePeers = (raw: string): Either.Either<ReadonlyMap<string, string>, TopologyError> => {
  const peers = new Map<string, string>()
  for (const entry of raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)) {
    const eq = entry.indexOf("=")
    const name = eq > 0 ? entry.slice(0, eq).trim() : ""
    const url = eq > 0 ? entry.slice(eq + 1).trim().replace(/\/+$/, "") : ""
    if (name === "" || !isHttpUrl(url)) {
      return Either.left(
        new TopologyError({
          message: `TESSERA_PEERS entry "${entry}" is not of the form name=http://host:port`
        })
      )
    }
    peers.set(name, url)
  }
  return Either.right(peers)
}

const isHttpUrl = (s: string): boolean => {
  try {
    const url = new URL(s)
    return url.protocol === "http:" || url.protocol === "https:"
  } catch {
    return false
  }
}

/**
 * Resolves the topology of this process against the modules the build knows. Fails, naming what
 * is missing, when a hosted module (or the gateway) needs a module that has no location.
 */
export const resolve = (
  modules: ReadonlyArray<ModuleNode>,
  options: { readonly hosted: string; readonly peers: string }
): Either.Either<Topology, TopologyError> =>
  Either.gen(function*() {
    const known = new Map(modules.map((m) => [m.name, m] as const))
    const names = options.hosted.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    const all = names.length === 0 || names.includes("all")
    const unknown = names.filter((n) => n !== "all" && n !== GATEWAY && !known.has(n))
    if (unknown.length > 0) {
      return yield* Either.left(
        new TopologyError({
          message: `TESSERA_MODULES names unknown module(s): ${unknown.join(", ")}; known: ${
            [...known.keys(), GATEWAY].join(", ")
          }`
        })
      )
    }
    const hosted = modules.map((m) => m.name).filter((n) => all || names.includes(n))
    const gateway = all || names.includes(GATEWAY)
    if (hosted.length === 0 && !gateway) {
      return yield* Either.left(new TopologyError({ message: "TESSERA_MODULES names no module to host" }))
    }
    const peers = yield* parsePeers(options.peers)
    for (const name of peers.keys()) {
      if (!known.has(name)) {
        return yield* Either.left(
          new TopologyError({ message: `TESSERA_PEERS names unknown module "${name}"` })
        )
      }
    }

    const locations = new Map<string, Location>()
    const missing: Array<string> = []
    const need = (name: string, neededBy: string) => {
      if (locations.has(name)) return
      if (hosted.includes(name)) {
        locations.set(name, { _tag: "Local" })
      } else {
        const url = peers.get(name)
        if (url === undefined) missing.push(`${neededBy} needs ${name}`)
        else locations.set(name, { _tag: "Remote", url })
      }
    }
    for (const name of hosted) {
      need(name, name)
      for (const callee of known.get(name)!.calls) need(callee, name)
    }
    if (gateway) {
      for (const m of modules) if (m.exposesHttp) need(m.name, GATEWAY)
    }
    if (missing.length > 0) {
      return yield* Either.left(
        new TopologyError({
          message: `modules with no location: ${missing.join("; ")}. Host them here (TESSERA_MODULES=${
            names.join(",")
          }) or say where they run in TESSERA_PEERS (name=http://host:port)`
        })
      )
    }
    return { hosted, gateway, locations, peers }
  })

/** What `TESSERA_MODULES` may name: `all`, `gateway`, and the build's modules. */
export const hostedModules = (known: ReadonlyArray<string>) =>
  Setting.make({
    name: "TESSERA_MODULES",
    description: "what this process hosts",
    default: "all",
    expected: `all, or names among ${[GATEWAY, ...known].join(", ")} separated by commas`,
    kind: { _tag: "Custom", invalid: ["nonsense", "catalog,nonsense", ",,"] },
    parse: (raw) => {
      const names = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
      const unknown = names.filter((n) => n !== "all" && n !== GATEWAY && !known.includes(n))
      if (names.length === 0) return Either.left("no name")
      return unknown.length > 0 ? Either.left(`unknown: ${unknown.join(", ")}`) : Either.right(raw)
    }
  })

/** Where the modules this process does not host run. */
export const peers = (known: ReadonlyArray<string>) =>
  Setting.optional({
    name: "TESSERA_PEERS",
    description: "where the other modules run",
    expected: `name=http://host:port pairs separated by commas, naming modules among ${known.join(", ")}`,
    kind: { _tag: "Custom", invalid: ["inventory", "inventory=ftp://10.0.0.7", "nonsense=http://10.0.0.7:8080", "inventory=http://"] },
    parse: (raw) =>
      Either.flatMap(Either.mapLeft(parsePeers(raw), (e) => e.message), (found) => {
        const unknown = [...found.keys()].filter((name) => !known.includes(name))
        return unknown.length > 0 ? Either.left(`unknown module: ${unknown.join(", ")}`) : Either.right(raw)
      })
  })

/** The topology of this process, from `TESSERA_MODULES` and `TESSERA_PEERS`. */
export const fromConfig = (modules: ReadonlyArray<ModuleNode>) =>
  Effect.gen(function*() {
    const known = modules.map((m) => m.name)
    const hosted = yield* hostedModules(known).config
    const peerList = yield* peers(known).config
    return yield* resolve(modules, { hosted, peers: Option.getOrElse(peerList, () => "") })
  })
