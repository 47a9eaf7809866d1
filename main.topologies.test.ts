/**
 * The topology files of deploy/topologies against this build: `topology check` accepts every
 * one, and every process it derives would start (Topology.resolve and Messaging.problems accept
 * its environment, as the process itself does at start); each example in deploy/topologies/broken
 * is refused with its reason. The command itself is run once each way on the release.
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeContext } from "@effect/platform-node"
import { Effect, Either, Exit } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { modules } from "./main.ts"
import * as Host from "./runtime/Host.ts"
import * as Messaging from "./runtime/messaging/Messaging.ts"
import * as Environments from "./runtime/deploy/Environments.ts"
import * as ModuleFacts from "./runtime/deploy/ModuleFacts.ts"
import * as TopologyCheck from "./runtime/deploy/TopologyCheck.ts"
import * as Up from "./runtime/deploy/Up.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Topology from "./runtime/Topology.ts"

const facts = ModuleFacts.fromModules(modules)
const dir = path.join(import.meta.dirname, "deploy", "topologies")
const files = (folder: string) => fs.readdirSync(folder).filter((f) => f.endsWith(".json")).map((f) => path.join(folder, f))

const load = (file: string) => Effect.runPromiseExit(TopologyCheck.load(file, facts).pipe(Effect.provide(NodeContext.layer)))

/** Each broken example and what its refusal must say (each line of `expected` is in some problem). */
const broken: Record<string, ReadonlyArray<string>> = {
  "module-nowhere.json": [
    "module shipping is placed in no process",
    `process "orders": orders calls shipping, which no process hosts: the call has no route`
  ],
  "unknown-module.json": [`process "billing" hosts "billing", unknown to this build`],
  "gateway-route.json": [`process "front": the gateway routes requests to notifications, which no process hosts`],
  "event-no-route.json": [
    `process "front" hosts notifications without orders, and notifications subscribes to OrderConfirmed, OrderCancelled of orders: with broker "in-process" events go only within a process`,
    `process "orders" hosts shipping without notifications, and notifications subscribes to ShipmentCreated of shipping`
  ],
  "embedded-split.json": [
    `database "embedded" lives inside one process, but this topology has 2 (front, stock)`,
    "module catalog would keep data in several databases (the embedded database of front.0 for front.0; the embedded database of stock.0 for stock.0)"
  ],
  "embedded-replicas.json": [`database "embedded" lives inside one process, but process "tessera" has 2 replicas`],
  "duplicate-process.json": [`process name "front" is used by 2 processes`],
  "no-gateway.json": ["no process hosts the gateway"],
  "own-database-embedded.json": [`ownDatabase (inventory) needs database "postgres"`],
  "not-a-topology.json": [`name: Expected a DNS label`, "processes.0.replicas: Expected a number between 1 and 64, actual 0"]
}

describe("deploy/topologies", () => {
  it("holds the five kinds of topology the issue asks for", () => {
    expect(files(dir).map((f) => path.basename(f)).sort()).toEqual(
      ["all-in-one.json", "mixed-split.json", "node-and-deno.json", "own-database.json", "per-module.json"]
    )
  })

  for (const file of files(dir)) {
    it(`${path.basename(file)}: accepted, and every process it derives would start`, async () => {
      const exit = await load(file)
      if (Exit.isFailure(exit)) throw new Error(String(exit.cause))
      const topology = exit.value
      const nodes = Host.nodes(modules)
      for (const instance of Environments.ofTopology(topology, facts, Environments.local({ portBase: 9000, databaseUrl: "postgres://h/db", amqpUrl: "amqp://h" }))) {
        const resolved = Topology.resolve(nodes, { hosted: instance.env.TESSERA_MODULES!, peers: instance.env.TESSERA_PEERS ?? "" })
        expect(Either.isRight(resolved), `${instance.name}: ${Either.isLeft(resolved) ? resolved.left.message : ""}`).toBe(true)
        const hosted = Either.getOrThrow(resolved).hosted
        expect(Messaging.problems(modules, hosted, { broker: instance.env.AMQP_URL !== undefined })).toEqual([])
      }
    })
  }
})

describe("deploy/topologies/broken", () => {
  it("has a reason in this table for every example", () => {
    expect(files(path.join(dir, "broken")).map((f) => path.basename(f)).sort()).toEqual(Object.keys(broken).sort())
  })

  for (const [name, expected] of Object.entries(broken)) {
    it(`${name}: refused, saying why`, async () => {
      const exit = await load(path.join(dir, "broken", name))
      expect(Exit.isFailure(exit)).toBe(true)
      const problems = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error.problems : []
      for (const line of expected) expect(problems.some((p) => p.includes(line)), `${line}\nnot in:\n${problems.join("\n")}`).toBe(true)
    })
  }
})

describe("tessera topology", () => {
  const run = async (args: ReadonlyArray<string>) => {
    const server = Processes.spawnCommand(args, {}, 0, "node")
    const code = await server.exited
    return { code, output: server.output() }
  }

  it("check FILE prints the processes of a topology that fits, and exits 0", async () => {
    const { code, output } = await run(["topology", "check", path.join(dir, "mixed-split.json")])
    expect(code).toBe(0)
    expect(output).toContain("mixed-split fits this build: 3 process(es), 4 instance(s)")
    expect(output).toMatch(/inventory\s+node\s+x2\s+inventory/)
  })

  it("check FILE refuses a broken one with one line per problem, and exits 1", async () => {
    const file = path.join(dir, "broken", "module-nowhere.json")
    const { code, output } = await run(["topology", "check", file])
    expect(code).toBe(1)
    expect(output.trim().split("\n")).toEqual([
      `${file}: module shipping is placed in no process: add it to one`,
      `${file}: process "orders": orders calls shipping, which no process hosts: the call has no route`
    ])
  })

  it("with no subcommand still prints this process's view", async () => {
    const { code, output } = await run(["topology"])
    expect(code).toBe(0)
    expect(output).toMatch(/^gateway\s+here$/m)
  })
})

describe("tessera up", () => {
  it("runs Deno with exactly the permissions of npm run start:deno", () => {
    expect(Up.DENO_FLAGS).toEqual(Processes.denoFlags())
  })
})
