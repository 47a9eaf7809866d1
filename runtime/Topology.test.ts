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

const urls = (...all: [string, ...Array<string>]): Topology.Peer => ({ _tag: "Urls", urls: all })
const remote = (...all: [string, ...Array<string>]): Topology.Location => ({ _tag: "Remote", peer: urls(...all) })
const shown = (t: Topology.Topology) => Object.fromEntries([...t.peers].map(([name, peer]) => [name, Topology.show(peer)]))

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
      catalog: remote("http://10.0.0.5:8080")
    })
    expect(shown(t)).toEqual({ catalog: "http://10.0.0.5:8080" })
  })

  it("keeps a peer's path, trimming every trailing slash", () => {
    const t = topology("inventory", "catalog=https://api.example.com/tessera//")
    expect(t.locations.get("catalog")).toEqual(remote("https://api.example.com/tessera"))
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
      catalog: remote("http://c:8080"),
      inventory: remote("http://i:8080")
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
    expect(t.peers.get("catalog")).toEqual(urls("http://elsewhere:8080"))
  })

  it("keeps every peer given, needed or not", () => {
    const t = topology("all", "inventory=http://i:8080")
    expect(t.locations.get("inventory")).toEqual({ _tag: "Local" })
    expect(shown(t)).toEqual({ inventory: "http://i:8080" })
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
      Either.right({ catalog: urls("http://c:8080"), inventory: urls("https://i.example.com") })
    )
  })

  it("reads an empty string as no peers", () => {
    expect(Either.map(Topology.parsePeers(""), (p) => p.size)).toEqual(Either.right(0))
  })

  it("reads several instances of one module, separated by |", () => {
    const peers = Topology.parsePeers("inventory=http://a:8080/ | http://b:8080,catalog=http://c:8080")
    expect(Either.map(peers, (p) => Object.fromEntries(p))).toEqual(
      Either.right({ inventory: urls("http://a:8080", "http://b:8080"), catalog: urls("http://c:8080") })
    )
  })

  it.each([
    ["dns://inventory-headless.shop.svc:8080", { host: "inventory-headless.shop.svc", port: 8080, path: "" }],
    ["dns://inventory-headless/", { host: "inventory-headless", port: 80, path: "" }],
    ["dns://i.example.com:9000/tessera/", { host: "i.example.com", port: 9000, path: "/tessera" }]
  ])("reads the DNS name %s, whose every address is an instance", (location, expected) => {
    const peers = Topology.parsePeers(`inventory=${location}`)
    expect(Either.map(peers, (p) => p.get("inventory"))).toEqual(Either.right({ _tag: "Dns", ...expected }))
    if (Either.isRight(peers)) expect(Topology.show(peers.right.get("inventory")!)).toBe(`dns://${expected.host}:${expected.port}${expected.path}`)
  })

  it("refuses a module named twice, naming it, rather than keep one of the two", () => {
    const result = Topology.parsePeers("inventory=http://a:8080,catalog=http://c:8080,inventory=http://b:8080")
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left.message).toContain("names inventory twice")
      expect(result.left.message).toContain("separated by |")
    }
  })

  it("refuses an instance named twice for one module, naming it", () => {
    const result = Topology.parsePeers("inventory=http://a:8080|http://b:8080|http://a:8080/")
    expect(Either.isLeft(result) && result.left.message).toBe("TESSERA_PEERS names the instance http://a:8080 of inventory twice")
  })

  it.each([
    "catalog",
    "=http://x",
    "catalog=ftp://x",
    "catalog=notaurl",
    "catalog=http://a:8080|",
    "catalog=|http://a:8080",
    "catalog=http://a:8080|ftp://b",
    "catalog=dns://",
    "catalog=dns://c:8080|http://a:8080",
    "catalog=http://a:8080|dns://c:8080",
    "catalog=dns://c:8080?x=1",
    "catalog=dns://c:99999"
  ])("refuses %j", (entry) => {
    const result = Topology.parsePeers(`inventory=http://i:8080,${entry}`)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left).toBeInstanceOf(Topology.TopologyError)
      expect(result.left.message).toContain(`"${entry}"`)
    }
  })
})
