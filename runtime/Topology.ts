/**
 * Which modules this process hosts and where the others are.
 *
 * `TESSERA_MODULES` (comma list, default `all`) names what runs here; `gateway` is one of the
 * names. `TESSERA_PEERS` (`inventory=http://10.0.0.7:8080,catalog=...`) says where the rest run.
 * A process whose modules need a module that is neither hosted nor located refuses to start.
 *
 * A module may run as several instances: its location names them all, separated by `|`
 * (`inventory=http://a:8080|http://b:8080`), or a DNS name whose every address is one instance,
 * resolved again as it changes (`inventory=dns://inventory-headless.shop.svc:8080`: a Kubernetes
 * headless Service). A module named twice is refused, naming it: merging the two would hide a
 * typo or two files that disagree.
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

/**
 * Where a module in another process runs: a fixed list of instances (one URL each, one or more),
 * or a DNS name whose every A/AAAA record is an instance reached at `port` (over http), resolved
 * again as it changes (transport/Discovery.ts).
 */
export type Peer =
  | { readonly _tag: "Urls"; readonly urls: readonly [string, ...Array<string>] }
  | { readonly _tag: "Dns"; readonly host: string; readonly port: number; readonly path: string }

export type Location =
  | { readonly _tag: "Local" }
  | { readonly _tag: "Remote"; readonly peer: Peer }

/** A peer as written in `TESSERA_PEERS` (normalised): what `topology` and health show. */
export const show = (peer: Peer): string =>
  peer._tag === "Urls" ? peer.urls.join("|") : `dns://${peer.host}:${peer.port}${peer.path}`

export interface Topology {
  /** Modules hosted by this process, in declaration order. */
  readonly hosted: ReadonlyArray<string>
  /** Whether this process serves the public REST API. */
  readonly gateway: boolean
  /** Where every module this process needs runs: hosted ones are `Local`. */
  readonly locations: ReadonlyMap<string, Location>
  /** Every peer given, needed or not (`topology` prints them). */
  readonly peers: ReadonlyMap<string, Peer>
}

export class TopologyError extends Data.TaggedError("TopologyError")<{ readonly message: string }> {}

/**
 * Parses `TESSERA_PEERS`: `name=location` pairs, comma separated, where a location is one URL,
 * several separated by `|`, or `dns://host:port`. A module named twice is refused.
 */
export const parsePeers = (raw: string): Either.Either<ReadonlyMap<string, Peer>, TopologyError> => {
  const peers = new Map<string, Peer>()
  for (const entry of raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)) {
    const eq = entry.indexOf("=")
    const name = eq > 0 ? entry.slice(0, eq).trim() : ""
    const peer = name === "" ? undefined : parseLocation(entry.slice(eq + 1))
    if (peer === undefined) {
      return Either.left(
        new TopologyError({
          message: `TESSERA_PEERS entry "${entry}" is not of the form name=http://host:port (several separated by |, or name=dns://host:port)`
        })
      )
    }
    if (peers.has(name)) {
      return Either.left(
        new TopologyError({
          message: `TESSERA_PEERS names ${name} twice: give all its instances in one entry, separated by | (${name}=http://a:8080|http://b:8080)`
        })
      )
    }
    if (peer._tag === "Urls" && new Set(peer.urls).size < peer.urls.length) {
      const twice = peer.urls.find((url, i) => peer.urls.indexOf(url) !== i)
      return Either.left(new TopologyError({ message: `TESSERA_PEERS names the instance ${twice} of ${name} twice` }))
    }
    peers.set(name, peer)
  }
  return Either.right(peers)
}

/** One location: URLs separated by `|`, or `dns://host:port[/path]`; `undefined` if malformed. */
const parseLocation = (raw: string): Peer | undefined => {
  const parts = raw.split("|").map((s) => s.trim())
  if (parts.length === 1 && parts[0]!.startsWith("dns://")) {
    const url = parseUrl(parts[0]!.replace(/^dns:/, "http:"))
    if (url === undefined || url.hostname === "" || url.search !== "" || url.hash !== "" || url.username !== "") return undefined
    return {
      _tag: "Dns",
      host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: url.port === "" ? 80 : Number(url.port),
      path: url.pathname.replace(/\/+$/, "")
    }
  }
  const urls = parts.map((part) => part.replace(/\/+$/, ""))
  if (!urls.every(isHttpUrl)) return undefined
  return { _tag: "Urls", urls: urls as unknown as readonly [string, ...Array<string>] }
}

const parseUrl = (s: string): URL | undefined => {
  try {
    return new URL(s)
  } catch {
    return undefined
  }
}

const isHttpUrl = (s: string): boolean => {
  const url = parseUrl(s)
  return url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== ""
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
        const peer = peers.get(name)
        if (peer === undefined) missing.push(`${neededBy} needs ${name}`)
        else locations.set(name, { _tag: "Remote", peer })
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
    expected: `name=http://host:port pairs separated by commas (several instances of one module separated by |, or name=dns://host:port), naming modules among ${
      known.join(", ")
    }, each once`,
    kind: {
      _tag: "Custom",
      invalid: [
        "inventory",
        "inventory=ftp://10.0.0.7",
        "nonsense=http://10.0.0.7:8080",
        "inventory=http://",
        "inventory=http://a:8080,inventory=http://b:8080",
        "inventory=http://a:8080|",
        "inventory=dns://"
      ]
    },
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
