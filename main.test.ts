/**
 * The end-to-end suite: real `tessera serve` processes from this build, driven over HTTP (the
 * gateway's REST API) and over typed RPC (inventory's contract). The same tests run in every
 * topology: a behaviour that holds in one only is a bug.
 */
import { type RpcClient, type RpcClientError } from "@effect/rpc"
import { Cause, Effect, Exit, Scope } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { InventoryRpcs, ReservationConflict, type ReservationId, StockInsufficient } from "./modules/inventory/index.ts"
import type { ProductId } from "./modules/catalog/index.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as RemoteClient from "./runtime/transport/RemoteClient.ts"

interface Deployment {
  /** Base URL of the process that hosts the gateway. */
  readonly gateway: string
  /** Base URL of the process that hosts catalog. */
  readonly catalog: string
  /** Base URL of the process that hosts inventory. */
  readonly inventory: string
  readonly servers: Array<Processes.Server>
  readonly cleanup: () => Promise<void>
  /** Modules that run in a process of their own here: stop it, and start it again on its port. */
  readonly alone?: Partial<Record<"catalog" | "inventory", Restartable>>
}

interface Restartable {
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
}

/** Spawns a server into `servers[index]`, and makes it restartable on the same port. */
const restartable = (servers: Array<Processes.Server>, index: number, port: number, env: Record<string, string>) => {
  servers[index] = Processes.spawnServer(port, env)
  return {
    stop: async () => {
      await servers[index]!.stop()
    },
    start: async () => {
      servers[index] = Processes.spawnServer(port, env)
      await startAll([servers[index]!])
    }
  }
}

const startAll = async (servers: ReadonlyArray<Processes.Server>) => {
  try {
    await Promise.all(servers.map((s) => Processes.waitReady(s)))
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()))
    throw error
  }
}

const postgres = await Services.findPostgres()

const topologies: Record<string, (() => Promise<Deployment>) | string> = {
  "one process on PostgreSQL": postgres.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const server = Processes.spawnServer(await Processes.freePort(), { DATABASE_URL: db.url, TESSERA_MODULES: "all" })
      await startAll([server])
      return { gateway: server.url, catalog: server.url, inventory: server.url, servers: [server], cleanup: db.drop }
    }
    : Services.unavailable("PostgreSQL", postgres.reason),

  "split across two processes, inventory with its own database": postgres.ok
    ? async () => {
      const shared = await Services.createDatabase(postgres.value)
      const own = await Services.createDatabase(postgres.value)
      const [front, back] = [await Processes.freePort(), await Processes.freePort()]
      const servers: Array<Processes.Server> = []
      servers[0] = Processes.spawnServer(front, {
        DATABASE_URL: shared.url,
        TESSERA_MODULES: "gateway,catalog",
        TESSERA_PEERS: `inventory=http://127.0.0.1:${back}`
      })
      const inventory = restartable(servers, 1, back, {
        DATABASE_URL: shared.url,
        TESSERA_INVENTORY_DATABASE_URL: own.url,
        TESSERA_MODULES: "inventory",
        TESSERA_PEERS: `catalog=http://127.0.0.1:${front}`
      })
      await startAll(servers)
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
    : Services.unavailable("PostgreSQL", postgres.reason),

  "split across three processes: gateway, catalog, inventory": postgres.ok
    ? async () => {
      const db = await Services.createDatabase(postgres.value)
      const [front, middle, back] = [await Processes.freePort(), await Processes.freePort(), await Processes.freePort()]
      const peers = `catalog=http://127.0.0.1:${middle},inventory=http://127.0.0.1:${back}`
      const servers: Array<Processes.Server> = []
      servers[0] = Processes.spawnServer(front, { DATABASE_URL: db.url, TESSERA_MODULES: "gateway", TESSERA_PEERS: peers })
      const catalog = restartable(servers, 1, middle, { DATABASE_URL: db.url, TESSERA_MODULES: "catalog", TESSERA_PEERS: peers })
      const inventory = restartable(servers, 2, back, { DATABASE_URL: db.url, TESSERA_MODULES: "inventory", TESSERA_PEERS: peers })
      await startAll(servers)
      return {
        gateway: servers[0].url,
        catalog: servers[1]!.url,
        inventory: servers[2]!.url,
        servers,
        cleanup: db.drop,
        alone: { catalog, inventory }
      }
    }
    : Services.unavailable("PostgreSQL", postgres.reason),

  "one process on embedded PostgreSQL": async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-e2e-"))
    const server = Processes.spawnServer(await Processes.freePort(), { DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir })
    await startAll([server])
    return {
      gateway: server.url,
      catalog: server.url,
      inventory: server.url,
      servers: [server],
      cleanup: async () => fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

const json = async (response: Response) => ({ status: response.status, type: response.headers.get("content-type"), body: await response.json() as any })

for (const [name, start] of Object.entries(topologies)) {
  if (typeof start === "string") {
    describe.skip(name, () => it(start, () => {}))
    continue
  }

  describe(name, () => {
    let deployment: Deployment
    let scope: Scope.CloseableScope
    let inventory: RpcClient.RpcClient<typeof InventoryRpcs extends { requests: ReadonlyMap<string, infer R> } ? R : never, RpcClientError.RpcClientError>
    const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)
    const runExit = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromiseExit(effect)
    const unique = () => Math.random().toString(36).slice(2, 10)

    const api = (route: string, init?: RequestInit & { json?: unknown }) =>
      fetch(`${deployment.gateway}${route}`, {
        ...init,
        ...(init?.json !== undefined
          ? { method: init.method ?? "POST", body: JSON.stringify(init.json), headers: { "content-type": "application/json" } }
          : {})
      })

    const createProduct = async (fields: Record<string, unknown> = {}) => {
      const response = await api("/v1/products", {
        json: { sku: `SKU-${unique()}`, name: "Widget", priceCents: 1299, currency: "EUR", ...fields }
      })
      expect(response.status).toBe(201)
      return (await response.json()) as { id: ProductId; sku: string; name: string }
    }

    beforeAll(async () => {
      deployment = await start()
      scope = await run(Scope.make())
      inventory = await run(Scope.extend(RemoteClient.make("inventory", InventoryRpcs, deployment.inventory), scope)) as any
    })

    afterAll(async () => {
      if (scope) await run(Scope.close(scope, Exit.void))
      for (const server of deployment?.servers ?? []) await server.stop()
      await deployment?.cleanup()
    })

    describe("products", () => {
      it("creates a product and reads it back", async () => {
        const created = await createProduct({ name: "Blue mug", description: "Holds tea", priceCents: 850, currency: "USD" })
        expect(created).toMatchObject({ name: "Blue mug", description: "Holds tea", priceCents: 850, currency: "USD" })
        const read = await json(await api(`/v1/products/${created.id}`))
        expect(read.status).toBe(200)
        expect(read.body).toEqual(created)
      })

      it("refuses a second product with the same SKU, and keeps the first", async () => {
        const first = await createProduct()
        const second = await json(await api("/v1/products", { json: { sku: first.sku, name: "Other", priceCents: 1, currency: "EUR" } }))
        expect(second.status).toBe(409)
        expect(second.type).toContain("application/problem+json")
        expect(second.body).toMatchObject({ type: "/problems/sku-taken", status: 409, sku: first.sku })
        expect((await json(await api(`/v1/products/${first.id}`))).body.name).toBe("Widget")
      })

      it("searches by text and pages with a cursor", async () => {
        const token = unique()
        const made = []
        for (let i = 0; i < 3; i++) made.push(await createProduct({ name: `Lamp ${token} ${i}` }))
        await createProduct({ name: "Unrelated" })
        const seen: Array<string> = []
        let cursor: string | null = null
        let pages = 0
        do {
          const query: string = `/v1/products?q=${token}&limit=2${cursor ? `&cursor=${cursor}` : ""}`
          const page = await json(await api(query))
          expect(page.status).toBe(200)
          seen.push(...page.body.items.map((p: { id: string }) => p.id))
          cursor = page.body.nextCursor
          pages++
        } while (cursor !== null && pages < 10)
        expect(pages).toBe(2)
        expect(seen).toEqual(made.map((p) => p.id))
      })

      it("matches % and _ literally in a search", async () => {
        const token = unique()
        await createProduct({ name: `100% ${token}` })
        await createProduct({ name: `100x ${token}` })
        const page = await json(await api(`/v1/products?q=${encodeURIComponent(`100% ${token}`)}`))
        expect(page.body.items.map((p: { name: string }) => p.name)).toEqual([`100% ${token}`])
      })
    })

    describe("bad input gets a problem response and stores nothing", () => {
      const expectProblem = async (response: Response, status: number, fields: ReadonlyArray<string> = []) => {
        const problem = await json(response)
        expect(problem.status).toBe(status)
        expect(problem.type).toContain("application/problem+json")
        expect(problem.body).toMatchObject({ status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) })
        expect(JSON.stringify(problem.body)).not.toMatch(/\bat .*\.ts:\d+|SELECT|INSERT/)
        for (const field of fields) {
          expect(problem.body.errors.map((e: { field: string }) => e.field)).toContain(field)
        }
        return problem.body
      }

      const countByToken = async (token: string) =>
        (await json(await api(`/v1/products?q=${token}`))).body.items.length

      it("malformed JSON", async () => {
        const token = unique()
        const response = await fetch(`${deployment.gateway}/v1/products`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: `{"sku":"${token}","name":`
        })
        expect((await expectProblem(response, 400)).type).toBe("/problems/malformed-body")
        expect(await countByToken(token)).toBe(0)
      })

      it("wrong types, named field by field", async () => {
        const token = unique()
        const body = await expectProblem(
          await api("/v1/products", { json: { sku: token, name: 42, priceCents: "12", currency: "EUR" } }),
          400,
          ["name", "priceCents"]
        )
        expect(body.type).toBe("/problems/validation")
        expect(await countByToken(token)).toBe(0)
      })

      it("missing fields", async () => {
        await expectProblem(await api("/v1/products", { json: { name: "No SKU" } }), 400, ["sku", "priceCents", "currency"])
      })

      it("values out of range: negative price, unknown currency, bad SKU", async () => {
        const token = unique()
        await expectProblem(
          await api("/v1/products", { json: { sku: `${token} has spaces`, name: token, priceCents: -5, currency: "XYZ" } }),
          400,
          ["sku", "priceCents", "currency"]
        )
        expect(await countByToken(token)).toBe(0)
      })

      it("negative and zero quantities", async () => {
        const product = await createProduct()
        for (const quantity of [-3, 0, 1.5, "7"]) {
          await expectProblem(await api(`/v1/products/${product.id}/stock`, { json: { quantity } }), 400, ["quantity"])
        }
        expect((await json(await api(`/v1/products/${product.id}/stock`))).body).toEqual({
          productId: product.id,
          available: 0,
          reserved: 0
        })
      })

      it("unknown ids", async () => {
        const unknown = "8d6f6f0e-1b0e-4c5e-9a51-6b2f4e1d2c3b"
        const body = await expectProblem(await api(`/v1/products/${unknown}`), 404)
        expect(body).toMatchObject({ type: "/problems/product-not-found", productId: unknown })
        await expectProblem(await api(`/v1/products/${unknown}/stock`), 404)
        await expectProblem(await api(`/v1/products/${unknown}/stock`, { json: { quantity: 5 } }), 404)
        await expectProblem(await api(`/v1/products/${unknown}/stock`), 404)
      })

      it("ids and query parameters that are not well formed", async () => {
        await expectProblem(await api("/v1/products/not-a-uuid"), 400, ["id"])
        await expectProblem(await api("/v1/products?limit=0"), 400, ["limit"])
        await expectProblem(await api("/v1/products?limit=ten"), 400, ["limit"])
        const cursor = await expectProblem(await api("/v1/products?cursor=bogus"), 400)
        expect(cursor.type).toBe("/problems/cursor-invalid")
      })

      it("oversized bodies", async () => {
        const token = unique()
        const response = await api("/v1/products", {
          json: { sku: token, name: token, description: "x".repeat(2 * 1024 * 1024), priceCents: 1, currency: "EUR" }
        })
        expect((await expectProblem(response, 413)).type).toBe("/problems/payload-too-large")
        expect(await countByToken(token)).toBe(0)
      })

      it("unknown routes", async () => {
        expect((await expectProblem(await api("/v1/nothing-here"), 404)).type).toBe("/problems/route-not-found")
      })
    })

    describe("stock", () => {
      it("adds restocked units and reads them back", async () => {
        const product = await createProduct()
        const first = await json(await api(`/v1/products/${product.id}/stock`, { json: { quantity: 10 } }))
        expect(first.status).toBe(200)
        expect(first.body).toEqual({ productId: product.id, available: 10, reserved: 0 })
        await api(`/v1/products/${product.id}/stock`, { json: { quantity: 5 } })
        expect((await json(await api(`/v1/products/${product.id}/stock`))).body).toEqual({
          productId: product.id,
          available: 15,
          reserved: 0
        })
      })
    })

    describe("reservations over typed RPC", () => {
      const stockOf = async (id: ProductId) => (await json(await api(`/v1/products/${id}/stock`))).body

      const stocked = async (units: number) => {
        const product = await createProduct()
        await api(`/v1/products/${product.id}/stock`, { json: { quantity: units } })
        return product.id
      }

      it("reserves all lines or none", async () => {
        const [a, b] = [await stocked(5), await stocked(1)]
        const exit = await runExit(
          inventory.reserve({
            reservationId: `r-${unique()}` as ReservationId,
            lines: [{ productId: a, quantity: 2 }, { productId: b, quantity: 2 }]
          })
        )
        expect(Exit.isFailure(exit)).toBe(true)
        const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
        expect(error?._tag === "Some" && error.value).toBeInstanceOf(StockInsufficient)
        expect(await stockOf(a)).toMatchObject({ available: 5, reserved: 0 })
        expect(await stockOf(b)).toMatchObject({ available: 1, reserved: 0 })
      })

      it("is idempotent by reservation id, and release and commit move the units", async () => {
        const product = await stocked(10)
        const reservationId = `r-${unique()}` as ReservationId
        const lines = [{ productId: product, quantity: 3 }] as const
        const first = await run(inventory.reserve({ reservationId, lines }))
        const again = await run(inventory.reserve({ reservationId, lines }))
        expect(again).toEqual(first)
        expect(await stockOf(product)).toMatchObject({ available: 7, reserved: 3 })

        const conflict = await runExit(inventory.reserve({ reservationId, lines: [{ productId: product, quantity: 4 }] }))
        expect(Exit.isFailure(conflict) && Cause.failureOption(conflict.cause).pipe((o) => o._tag === "Some" && o.value))
          .toBeInstanceOf(ReservationConflict)

        expect((await run(inventory.commit({ reservationId }))).status).toBe("committed")
        expect((await run(inventory.commit({ reservationId }))).status).toBe("committed")
        expect(await stockOf(product)).toMatchObject({ available: 7, reserved: 0 })

        const other = `r-${unique()}` as ReservationId
        await run(inventory.reserve({ reservationId: other, lines: [{ productId: product, quantity: 2 }] }))
        expect((await run(inventory.release({ reservationId: other }))).status).toBe("released")
        expect((await run(inventory.release({ reservationId: other }))).status).toBe("released")
        expect(await stockOf(product)).toMatchObject({ available: 7, reserved: 0 })
      })

      it("refuses a reserve that arrives after its release", async () => {
        const product = await stocked(2)
        const reservationId = `r-${unique()}` as ReservationId
        expect((await run(inventory.release({ reservationId }))).status).toBe("released")
        const late = await runExit(inventory.reserve({ reservationId, lines: [{ productId: product, quantity: 1 }] }))
        expect(Exit.isFailure(late)).toBe(true)
        expect(await stockOf(product)).toMatchObject({ available: 2, reserved: 0 })
      })

      it("never oversells: 50 concurrent reservations of 10 units reserve exactly 10", async () => {
        const product = await stocked(10)
        const exits = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            runExit(inventory.reserve({ reservationId: `c-${unique()}-${i}` as ReservationId, lines: [{ productId: product, quantity: 1 }] })))
        )
        const won = exits.filter(Exit.isSuccess).length
        const lost = exits.filter((exit) =>
          Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe((o) => o._tag === "Some" && o.value instanceof StockInsufficient)
        ).length
        expect(won).toBe(10)
        expect(lost).toBe(40)
        expect(await stockOf(product)).toMatchObject({ available: 0, reserved: 10 })
      })
    })

    describe("the process", () => {
      it("reports itself ready and says where each module runs", async () => {
        const ready = await json(await fetch(`${deployment.gateway}/health/ready`))
        expect(ready.status).toBe(200)
        const where = Object.fromEntries(ready.body.modules.map((m: { name: string; location: string }) => [m.name, m.location]))
        expect(where.catalog).toBe(deployment.catalog === deployment.gateway ? "local" : deployment.catalog)
        expect(where.inventory).toBe(deployment.inventory === deployment.gateway ? "local" : deployment.inventory)
      })

      it("serves its OpenAPI document and docs page", async () => {
        const spec = await json(await fetch(`${deployment.gateway}/openapi.json`))
        expect(spec.status).toBe(200)
        expect(Object.keys(spec.body.paths)).toEqual(
          expect.arrayContaining(["/v1/products", "/v1/products/{id}", "/v1/products/{id}/stock"])
        )
        expect(spec.body.paths["/v1/products/{id}"].get.responses["404"].content["application/problem+json"]).toBeDefined()
        const docs = await fetch(`${deployment.gateway}/docs`)
        expect(docs.status).toBe(200)
        expect(docs.headers.get("content-type")).toContain("text/html")
      })

      it("answers 503 while a module it needs is down, and recovers when it is back", async (context) => {
        const alone = deployment.alone
        if (alone === undefined) return context.skip("every module runs in the gateway's process here")
        const product = await createProduct()
        const unavailable = async (route: string, init?: RequestInit & { json?: unknown }) => {
          const response = await json(await api(route, init))
          expect(response.status).toBe(503)
          expect(response.body).toMatchObject({ type: "/problems/module-unavailable", status: 503 })
        }
        const recovered = async (route: string) => {
          let status = 0
          for (let i = 0; i < 50 && status !== 200; i++) {
            status = (await api(route)).status
            if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 200))
          }
          expect(status).toBe(200)
        }
        if (alone.inventory) {
          await alone.inventory.stop()
          await unavailable(`/v1/products/${product.id}/stock`)
          expect((await fetch(`${deployment.gateway}/health/ready`)).status).toBe(503)
          await alone.inventory.start()
          await recovered(`/v1/products/${product.id}/stock`)
        }
        if (alone.catalog) {
          await alone.catalog.stop()
          await unavailable(`/v1/products/${product.id}`)
          // Through inventory, which cannot reach the catalog to check the product.
          await unavailable(`/v1/products/${product.id}/stock`, { json: { quantity: 1 } })
          await alone.catalog.start()
          await recovered(`/v1/products/${product.id}`)
        }
      })

      it("stops cleanly on SIGTERM", async () => {
        for (const server of deployment.servers) expect(await server.stop()).toBe(0)
      })
    })
  })
}

describe("a process whose topology is incomplete", () => {
  it("refuses to start and names what is missing", async () => {
    const server = Processes.spawnServer(await Processes.freePort(), { TESSERA_MODULES: "inventory", TESSERA_PEERS: "" })
    expect(await server.exited).toBe(1)
    expect(server.output()).toContain("inventory needs catalog")
  })
})

describe("the tessera command", () => {
  it("prints the topology", async () => {
    const command = Processes.spawnCommand(["topology"], {
      TESSERA_MODULES: "gateway,catalog",
      TESSERA_PEERS: "inventory=http://10.0.0.7:8080"
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
      expect(command.output()).toContain("migrated: catalog, inventory")
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

describe("embedded PostgreSQL", () => {
  it("keeps the data across a restart", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-restart-"))
    try {
      const port = await Processes.freePort()
      const first = Processes.spawnServer(port, { DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir })
      await Processes.waitReady(first)
      const created = await fetch(`${first.url}/v1/products`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sku: "KEEP-1", name: "Kept", priceCents: 100, currency: "EUR" })
      })
      const { id } = await created.json() as { id: string }
      expect(await first.stop()).toBe(0)

      const second = Processes.spawnServer(port, { DATABASE_URL: undefined, TESSERA_DATA_DIR: dataDir })
      await Processes.waitReady(second)
      const read = await fetch(`${second.url}/v1/products/${id}`)
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
    const server = Processes.spawnServer(await Processes.freePort(), { DATABASE_URL: db.url })
    try {
      await Processes.waitReady(server)
      const body = JSON.stringify({ sku: `LATE-${Date.now()}`, name: "In flight", priceCents: 100, currency: "EUR" })
      // Send the headers and half the body, signal the process, then send the rest.
      const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = http.request(`${server.url}/v1/products`, {
          method: "POST",
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
        }, (response) => {
          let text = ""
          response.on("data", (chunk) => (text += chunk))
          response.on("end", () => resolve({ status: response.statusCode!, body: text }))
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
      expect(JSON.parse(finished.body)).toMatchObject({ name: "In flight" })
      await expect(fetch(`${server.url}/health/live`)).rejects.toThrow()
      expect(await server.exited).toBe(0)
    } finally {
      await server.stop()
      await db.drop()
    }
  })
})
