import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as Topology from "./Topology.ts"

const modules: ReadonlyArray<Topology.ModuleNode> = [
  { name: "catalog", calls: [], exposesHttp: true },
  { name: "inventory", calls: ["catalog"], exposesHttp: true }
]

const resolve = (hosted: string, peers = "") => Topology.resolve(modules, { hosted, peers })

const topology = (hosted: string, peers = "") =>
  Either.getOrThrowWith(resolve(hosted, peers), (error) => new Error(`expected a topology, got: ${error.message}`))

const failure = (hosted: string, peers = "") =>
  Either.match(resolve(hosted, peers), {
    onLeft: (error) => error.message,
    onRight: (t) => {
      throw new Error(`expected a TopologyError, got hosted=${t.hosted.join(",")} gateway=${t.gateway}`)
    }
  })

const locations = (t: Topology.Topology) => Object.fromEntries(t.locations)

describe("Topology.resolve", () => {
  it.each(["all", "", " , "])("hosts every module and the gateway for TESSERA_MODULES=%j", (hosted) => {
    const t = topology(hosted)
    expect(t.hosted).toEqual(["catalog", "inventory"])
    expect(t.gateway).toBe(true)
    expect(locations(t)).toEqual({ catalog: { _tag: "Local" }, inventory: { _tag: "Local" } })
  })

  it("hosts a subset, in declaration order, without the gateway", () => {
    const t = topology(" inventory , catalog ")
    expect(t.hosted).toEqual(["catalog", "inventory"])
    expect(t.gateway).toBe(false)
    expect(locations(t)).toEqual({ catalog: { _tag: "Local" }, inventory: { _tag: "Local" } })
  })

  it("hosts a module that calls nothing on its own", () => {
    const t = topology("catalog")
    expect(t.hosted).toEqual(["catalog"])
    expect(locations(t)).toEqual({ catalog: { _tag: "Local" } })
  })

  it("refuses a hosted module whose callee is neither hosted nor a peer", () => {
    const message = failure("inventory")
    expect(message).toContain("inventory needs catalog")
    expect(message).toContain("TESSERA_PEERS")
  })

  it("locates a peer as Remote at its URL, trailing slash trimmed", () => {
    const t = topology("inventory", "catalog=http://10.0.0.5:8080/")
    expect(t.hosted).toEqual(["inventory"])
    expect(locations(t)).toEqual({
      inventory: { _tag: "Local" },
      catalog: { _tag: "Remote", url: "http://10.0.0.5:8080" }
    })
    expect(Object.fromEntries(t.peers)).toEqual({ catalog: "http://10.0.0.5:8080" })
  })

  it("keeps a peer's path, trimming every trailing slash", () => {
    const t = topology("inventory", "catalog=https://api.example.com/tessera//")
    expect(t.locations.get("catalog")).toEqual({ _tag: "Remote", url: "https://api.example.com/tessera" })
  })

  it("makes a gateway alone need every module that exposes HTTP, naming each missing one", () => {
    const message = failure("gateway")
    expect(message).toContain("gateway needs catalog")
    expect(message).toContain("gateway needs inventory")
  })

  it("serves a gateway alone when every HTTP module has a peer", () => {
    const t = topology("gateway", "catalog=http://c:8080,inventory=http://i:8080")
    expect(t.hosted).toEqual([])
    expect(t.gateway).toBe(true)
    expect(locations(t)).toEqual({
      catalog: { _tag: "Remote", url: "http://c:8080" },
      inventory: { _tag: "Remote", url: "http://i:8080" }
    })
  })

  it("does not ask a gateway for a module that exposes no HTTP", () => {
    const withWorker = [...modules, { name: "mailer", calls: [], exposesHttp: false }]
    const result = Topology.resolve(withWorker, { hosted: "gateway,catalog", peers: "inventory=http://i:8080" })
    expect(Either.isRight(result)).toBe(true)
    if (Either.isRight(result)) expect(result.right.locations.has("mailer")).toBe(false)
  })

  it("keeps a hosted module Local even when it is also listed as a peer", () => {
    const t = topology("catalog,inventory", "catalog=http://elsewhere:8080")
    expect(t.locations.get("catalog")).toEqual({ _tag: "Local" })
    expect(t.peers.get("catalog")).toBe("http://elsewhere:8080")
  })

  it("keeps every peer given, needed or not", () => {
    const t = topology("all", "inventory=http://i:8080")
    expect(t.locations.get("inventory")).toEqual({ _tag: "Local" })
    expect(Object.fromEntries(t.peers)).toEqual({ inventory: "http://i:8080" })
  })

  it("refuses unknown modules in TESSERA_MODULES, naming them", () => {
    const message = failure("catalog,shipping,billing")
    expect(message).toContain("TESSERA_MODULES")
    expect(message).toContain("shipping, billing")
  })

  it("refuses an unknown module in TESSERA_PEERS, naming it", () => {
    const message = failure("all", "shipping=http://s:8080")
    expect(message).toContain("TESSERA_PEERS")
    expect(message).toContain("shipping")
  })

  it.each(["catalog", "=http://x", "catalog=ftp://x", "catalog=notaurl", "catalog="])(
    "refuses the malformed peer entry %j",
    (entry) => {
      const message = failure("inventory", entry)
      expect(message).toContain("TESSERA_PEERS")
      expect(message).toContain(entry)
    }
  )
})

describe("Topology.parsePeers", () => {
  it("reads name=url pairs, ignoring blanks and spaces", () => {
    const peers = Topology.parsePeers(" catalog = http://c:8080/ ,, inventory=https://i.example.com ,")
    expect(Either.map(peers, (p) => Object.fromEntries(p))).toEqual(
      Either.right({ catalog: "http://c:8080", inventory: "https://i.example.com" })
    )
  })

  it("reads an empty string as no peers", () => {
    expect(Either.map(Topology.parsePeers(""), (p) => p.size)).toEqual(Either.right(0))
  })

  it.each(["catalog", "=http://x", "catalog=ftp://x", "catalog=notaurl"])("refuses %j", (entry) => {
    const result = Topology.parsePeers(`inventory=http://i:8080,${entry}`)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left).toBeInstanceOf(Topology.TopologyError)
      expect(result.left.message).toContain(`"${entry}"`)
    }
  })
})
