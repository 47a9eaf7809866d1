/**
 * The end-to-end suite (main.e2e.ts) in five topologies of real `tessera serve` processes from
 * this build: the topology files of deploy/topologies started as `tessera up` starts them
 * (all-in-one on the embedded database on Node and on Deno, own-database, mixed-split with two
 * inventory instances, node-and-deno; per-module runs in containers, main.containers.alone.test.ts). Then what a process does at its edges: a
 * topology it cannot serve, its credentials, its command line, its configuration, its shutdown.
 * main.containers.alone.test.ts runs the same suite against the per-module compose topology.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as EndToEnd from "./main.e2e.ts"
import { modules } from "./main.ts"
import * as ModuleFacts from "./runtime/deploy/ModuleFacts.ts"
import { ADMIN, type Deployment, gatewayFetch, headersOf, login, settings } from "./main.e2e.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as TopologyProcesses from "./runtime/testing/TopologyProcesses.ts"

const postgres = await Services.findPostgres()
const rabbit = await Services.findRabbit()
const facts = ModuleFacts.fromModules(modules)

/** A topology file of deploy/topologies, started as `tessera up` starts it (TopologyProcesses.ts). */
const fromFile = (name: string, runtime: Processes.Runtime = Processes.RUNTIME) => async (): Promise<Deployment> => {
  const started = await TopologyProcesses.start(name, facts, settings, runtime)
  return {
    gateway: started.serving("gateway"),
    catalog: started.serving("catalog"),
    inventory: started.serving("inventory"),
    routes: { catalog: started.route("catalog"), inventory: started.route("inventory") },
    servers: started.servers,
    cleanup: started.cleanup,
    alone: Object.fromEntries(["catalog", "inventory", "identity"].flatMap((m) => started.alone.has(m) ? [[m, started.alone.get(m)!]] : []))
  }
}

const needsPostgres = postgres.ok ? undefined : Services.unavailable("PostgreSQL", postgres.reason)
const needsBoth = needsPostgres ?? (rabbit.ok ? undefined : Services.unavailable("RabbitMQ", rabbit.reason))

/** Every topology file of deploy/topologies but per-module (which main.containers.alone.test.ts runs in containers). */
const topologies: Record<string, (() => Promise<Deployment>) | string> = {
  "own-database.json: inventory in a process of its own, on a database of its own": needsPostgres ?? fromFile("own-database.json"),

  "mixed-split.json: gateway with the light modules, the order flow apart, two inventory instances": needsBoth ?? fromFile("mixed-split.json"),

  "node-and-deno.json: the order flow and inventory on Deno, the rest on Node": needsBoth ?? fromFile("node-and-deno.json"),

  "all-in-one.json: one process on embedded PostgreSQL": fromFile("all-in-one.json", "node"),

  "all-in-one.json on Deno": fromFile("all-in-one.json", "deno")
}

for (const [name, start] of Object.entries(topologies)) {
  if (typeof start === "string") describe.skip(name, () => it(start, () => {}))
  else EndToEnd.suite(name, start)
}

describe("a process whose topology is incomplete", () => {
  it("refuses to start and names what is missing", async () => {
    const server = Processes.spawnServer(await Processes.freePort(), { ...settings, TESSERA_MODULES: "inventory", TESSERA_PEERS: "" })
    expect(await server.exited).toBe(1)
    expect(server.output()).toContain("inventory needs catalog")
  })
})

describe("service credentials", () => {
  it("a process that runs part of the system refuses to start without TESSERA_SERVICE_SECRET", async () => {
    const server = Processes.spawnServer(await Processes.freePort(), {
      TESSERA_SERVICE_SECRET: undefined,
      TESSERA_MODULES: "gateway,identity",
      TESSERA_PEERS: "catalog=http://127.0.0.1:9,inventory=http://127.0.0.1:9,orders=http://127.0.0.1:9,notifications=http://127.0.0.1:9"
    })
    expect(await server.exited).toBe(1)
    expect(server.output()).toContain("TESSERA_SERVICE_SECRET")
  })

  it("refuses a secret too short to be one", async () => {
    const server = Processes.spawnServer(await Processes.freePort(), { TESSERA_SERVICE_SECRET: "changeme", TESSERA_MODULES: "identity" })
    expect(await server.exited).toBe(1)
    expect(server.output()).toContain("at least 32 characters")
  })
})

describe("the tessera command", () => {
  it("prints the topology", async () => {
    const command = Processes.spawnCommand(["topology"], {
      TESSERA_MODULES: "gateway,catalog",
      TESSERA_PEERS: "inventory=http://10.0.0.7:8080,identity=http://10.0.0.8:8080,orders=http://10.0.0.9:8080,notifications=http://10.0.0.10:8080"
    })
    expect(await command.exited).toBe(0)
    expect(command.output().split("\n").map((line) => line.replace(/\s+/g, " ").trim())).toEqual(
      expect.arrayContaining(["gateway here", "catalog here", "inventory http://10.0.0.7:8080 (calls catalog)"])
    )
  })

  it.runIf(postgres.ok)("migrates and exits", async () => {
    if (!postgres.ok) return
    const db = await Services.createDatabase(postgres.value)
    try {
      const command = Processes.spawnCommand(["migrate"], { DATABASE_URL: db.url, TESSERA_MODULES: "all" })
      expect(await command.exited).toBe(0)
      expect(command.output()).toContain("migrated: catalog, inventory, identity")
      // Serving afterwards finds nothing left to apply.
      const server = Processes.spawnServer(await Processes.freePort(), { DATABASE_URL: db.url, LOG_LEVEL: "info" })
      await Processes.waitReady(server)
      expect(await server.stop()).toBe(0)
      expect(server.output()).not.toContain("applied migrations")
    } finally {
      await db.drop()
    }
  })
})

describe("configuration", () => {
  it("takes an empty variable as unset: DATABASE_URL= migrates the embedded database", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-empty-env-"))
    try {
      const command = Processes.spawnCommand(["migrate"], {
        DATABASE_URL: "",
        TESSERA_DATA_DIR: dataDir,
        TESSERA_MODULES: "",
        TESSERA_RATE_LIMIT: " "
      })
      expect(await command.exited, command.output()).toBe(0)
      expect(command.output()).toContain("migrated: catalog, inventory, identity")
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe("embedded PostgreSQL", () => {
  it("keeps the data across a restart", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-restart-"))
    try {
      const port = await Processes.freePort()
      const first = Processes.spawnServer(port, { ...settings, DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir })
      await Processes.waitReady(first)
      const created = await gatewayFetch(`${first.url}/v1/products`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${await login(first.url, ADMIN)}` },
        body: JSON.stringify({ sku: "KEEP-1", name: "Kept", priceCents: 100, currency: "EUR" })
      })
      const { id } = await created.json() as { id: string }
      expect(await first.stop()).toBe(0)

      const second = Processes.spawnServer(port, { ...settings, DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir })
      await Processes.waitReady(second)
      const read = await gatewayFetch(`${second.url}/v1/products/${id}`)
      expect(read.status).toBe(200)
      expect(await read.json()).toMatchObject({ sku: "KEEP-1", name: "Kept" })
      expect(await second.stop()).toBe(0)
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

describe("graceful shutdown", () => {
  it.runIf(postgres.ok)("finishes a request in flight when SIGTERM arrives, refuses new ones, then exits 0", async () => {
    if (!postgres.ok) return
    const db = await Services.createDatabase(postgres.value)
    const server = Processes.spawnServer(await Processes.freePort(), { ...settings, DATABASE_URL: db.url })
    try {
      await Processes.waitReady(server)
      const token = await login(server.url, ADMIN)
      const body = JSON.stringify({ sku: `LATE-${Date.now()}`, name: "In flight", priceCents: 100, currency: "EUR" })
      // Send the headers and half the body, signal the process, then send the rest.
      const answer = new Promise<{ status: number; headers: Headers; body: string }>((resolve, reject) => {
        const request = http.request(`${server.url}/v1/products`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            authorization: `Bearer ${token}`
          }
        }, (response) => {
          let text = ""
          response.on("data", (chunk) => (text += chunk))
          response.on("end", () => resolve({ status: response.statusCode!, headers: headersOf(response), body: text }))
        })
        request.on("error", reject)
        request.write(body.slice(0, 20))
        setTimeout(() => {
          server.process.kill("SIGTERM")
          setTimeout(() => request.end(body.slice(20)), 500)
        }, 300)
      })
      const finished = await answer
      expect(finished.status).toBe(201)
      await gatewayFetch.check(server.url, { method: "POST", url: "/v1/products", ...finished })
      expect(JSON.parse(finished.body)).toMatchObject({ name: "In flight" })
      // A new request is refused: 503 while the modules stop (a workflow engine takes a moment
      // to hand its sagas back), then no connection at all once the server has closed.
      const fresh = await new Promise<number | "refused">((resolve) => {
        const probe = http.get(`${server.url}/v1/products`, { agent: false }, (response) => {
          response.resume()
          resolve(response.statusCode!)
        })
        probe.on("error", () => resolve("refused"))
      })
      expect([503, "refused"]).toContain(fresh)
      expect(await server.exited).toBe(0)
    } finally {
      await server.stop()
      await db.drop()
    }
  })
})
