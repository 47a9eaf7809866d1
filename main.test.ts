/**
 * The end-to-end suite (main.e2e.ts) in six topologies of real `tessera serve`
 * processes from this build: one process on PostgreSQL and on the embedded database, on Node and
 * on Deno, and split across two and four processes. Then what a process does at its edges: a
 * topology it cannot serve, its credentials, its command line, its configuration, its shutdown.
 * main.containers.alone.test.ts runs the same suite against the per-module compose topology.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as EndToEnd from "./main.e2e.ts"
import { ADMIN, type Deployment, gatewayFetch, headersOf, login, settings } from "./main.e2e.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

/** Spawns a server into `servers[index]`, and makes it restartable on the same port. */
const restartable = (
  servers: Array<Processes.Server>,
  index: number,
  port: number,
  env: Record<string, string>,
  runtime: Processes.Runtime = Processes.RUNTIME
) => {
  env = { ...settings, ...env }
  servers[index] = Processes.spawnServer(port, env, runtime)
  return {
    stop: async () => {
      await servers[index]!.stop()
    },
    start: async () => {
      servers[index] = Processes.spawnServer(port, env, runtime)
      await Processes.waitAllReady([servers[index]!])
    }
  }
}


const postgres = await Services.findPostgres()

/** gateway, catalog, identity, orders, payments and shipping in one process on Node; inventory, with a database of its own, in another. */
const twoProcesses = async (inventoryRuntime: Processes.Runtime): Promise<Deployment> => {
  if (!postgres.ok) throw new Error(postgres.reason)
  const shared = await Services.createDatabase(postgres.value)
  const own = await Services.createDatabase(postgres.value)
  const [front, back] = [await Processes.freePort(), await Processes.freePort()]
  const servers: Array<Processes.Server> = []
  servers[0] = Processes.spawnServer(front, {
    ...settings,
    DATABASE_URL: shared.url,
    TESSERA_MODULES: "gateway,catalog,identity,orders,payments,shipping,notifications",
    TESSERA_PEERS: `inventory=http://127.0.0.1:${back}`
  })
  const inventory = restartable(servers, 1, back, {
    DATABASE_URL: shared.url,
    TESSERA_INVENTORY_DATABASE_URL: own.url,
    TESSERA_MODULES: "inventory",
    TESSERA_PEERS: `catalog=http://127.0.0.1:${front}`
  }, inventoryRuntime)
  await Processes.waitAllReady(servers)
  return {
    gateway: servers[0].url,
    catalog: servers[0].url,
    inventory: servers[1]!.url,
    servers,
    cleanup: async () => {
      await shared.drop()
      await own.drop()
    },
    alone: { inventory }
  }
}

/** Every module in one process on embedded PostgreSQL, on `runtime`. */
const embedded = async (runtime: Processes.Runtime): Promise<Deployment> => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-e2e-"))
  const server = Processes.spawnServer(await Processes.freePort(), { ...settings, DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir }, runtime)
  await Processes.waitAllReady([server])
  return {
    gateway: server.url,
    catalog: server.url,
    inventory: server.url,
    servers: [server],
    cleanup: async () => fs.rmSync(dataDir, { recursive: true, force: true })
  }
}

const topologies: Record<string, (() => Promise<Deployment>) | string> = {
  "one process on PostgreSQL": postgres.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const server = Processes.spawnServer(await Processes.freePort(), { ...settings, DATABASE_URL: db.url, TESSERA_MODULES: "all" })
      await Processes.waitAllReady([server])
      return { gateway: server.url, catalog: server.url, inventory: server.url, servers: [server], cleanup: db.drop }
    }
    : Services.unavailable("PostgreSQL", postgres.reason),

  "split across two processes, inventory with its own database": postgres.ok
    ? () => twoProcesses("node")
    : Services.unavailable("PostgreSQL", postgres.reason),

  "split across two processes, inventory on Deno with its own database": postgres.ok
    ? () => twoProcesses("deno")
    : Services.unavailable("PostgreSQL", postgres.reason),

  "split across four processes: gateway, catalog, inventory, identity": postgres.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const ports = await Promise.all([0, 1, 2, 3].map(() => Processes.freePort()))
      const [front, catalogPort, inventoryPort, identityPort] = ports as [number, number, number, number]
      const peers = [
        `catalog=http://127.0.0.1:${catalogPort}`,
        `inventory=http://127.0.0.1:${inventoryPort}`,
        `identity=http://127.0.0.1:${identityPort}`
      ].join(",")
      const servers: Array<Processes.Server> = []
      const env = (modules: string) => ({ DATABASE_URL: db.url, TESSERA_MODULES: modules, TESSERA_PEERS: peers })
      servers[0] = Processes.spawnServer(front, { ...settings, ...env("gateway,orders,payments,shipping,notifications") })
      const catalog = restartable(servers, 1, catalogPort, env("catalog"))
      const inventory = restartable(servers, 2, inventoryPort, env("inventory"))
      const identity = restartable(servers, 3, identityPort, env("identity"))
      await Processes.waitAllReady(servers)
      return {
        gateway: servers[0].url,
        catalog: servers[1]!.url,
        inventory: servers[2]!.url,
        servers,
        cleanup: db.drop,
        alone: { catalog, inventory, identity }
      }
    }
    : Services.unavailable("PostgreSQL", postgres.reason),

  "one process on embedded PostgreSQL": () => embedded("node"),

  "one process on embedded PostgreSQL, on Deno": () => embedded("deno")
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
