/**
 * `tessera up FILE` on a split topology (deploy/topologies/own-database.json: the gateway and
 * most modules in one process, inventory in another on a database of its own): the gateway
 * serves, a request crosses to inventory and back to the catalog, and SIGTERM stops every
 * process and exits 0.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as net from "node:net"
import * as path from "node:path"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as SplitDeployment from "./runtime/testing/SplitDeployment.ts"

const postgres = await Services.findPostgres()

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => (socket.destroy(), resolve(true)))
    socket.once("error", () => resolve(false))
  })

describe.skipIf(!postgres.ok)(postgres.ok ? "tessera up" : Services.unavailable("PostgreSQL", postgres.reason), () => {
  let database: Awaited<ReturnType<typeof Services.createDatabase>>
  let up: Processes.Server
  let base: number

  beforeAll(async () => {
    if (!postgres.ok) return
    database = await Services.createDatabase(postgres.value)
    // own-database.json has two instances: the base port and the next.
    base = await Processes.freePorts(2)
    up = Processes.spawnCommand(["up", path.join("deploy", "topologies", "own-database.json"), "--port-base", String(base)], {
      DATABASE_URL: database.url,
      TESSERA_ADMIN_EMAIL: SplitDeployment.ADMIN.email,
      TESSERA_ADMIN_PASSWORD: SplitDeployment.ADMIN.password,
      TESSERA_PASSWORD_HASH_COST: "10",
      NO_COLOR: "1"
    }, base, "node")
    await Processes.waitReady(up)
    // Every instance ready, not only the gateway.
    const deadline = Date.now() + 60_000
    while (!up.output().includes("own-database: all 2 instance(s) ready") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })

  afterAll(async () => {
    await up?.stop()
    await database?.drop()
    // The database `tessera up` made for inventory beside it.
    if (database !== undefined && postgres.ok) {
      const own = `${new URL(database.url).pathname.slice(1)}_inventory`
      await Effect.runPromise(
        Effect.scoped(Effect.flatMap(
          PgClient.make({ url: Redacted.make(postgres.value), maxConnections: 1 }),
          (sql) => sql.unsafe(`DROP DATABASE IF EXISTS "${own}" WITH (FORCE)`)
        )).pipe(Effect.provide(Reactivity.layer))
      )
    }
  })

  it("serves a working gateway across its processes, with prefixed logs", async () => {
    expect(up.output()).toContain(`up own-database: all 2 instance(s) ready; the REST API on http://127.0.0.1:${base}`)
    expect(up.output()).toMatch(/^up inventory\.0: node, port \d+, hosting inventory$/m)
    expect(up.output()).toContain(`created inventory's database ${new URL(database.url).pathname.slice(1)}_inventory`)
    const ready = await fetch(`${up.url}/health/ready`)
    expect(ready.status).toBe(200)
    const body = (await ready.json()) as { modules: ReadonlyArray<{ name: string; location: string }> }
    expect(body.modules.find((m) => m.name === "inventory")?.location).toBe(`http://127.0.0.1:${base + 1}`)

    const api = await SplitDeployment.adminClient(up.url)
    const created = await api("/v1/products", { json: { sku: `UP-${base}`, name: "Up mug", priceCents: 850, currency: "EUR" } })
    expect(created.status).toBe(201)
    const product = (await created.json()) as { id: string }
    // Gateway → inventory (its own process and database) → catalog (back in the first).
    const restocked = await api(`/v1/products/${product.id}/stock`, { json: { quantity: 7 } })
    expect(restocked.status).toBe(200)
    expect(await restocked.json()).toMatchObject({ productId: product.id, available: 7 })
    expect((await fetch(`${up.url}/v1/products/${product.id}`)).status).toBe(200)
  })

  it("stops every process on SIGTERM and exits 0", async () => {
    const code = await up.stop()
    expect(code).toBe(0)
    expect(up.output()).toContain("up stopped 2 instance(s)")
    // Each instance itself exited 0 on its SIGTERM.
    expect(up.output()).not.toContain("stopped badly")
    expect(await listening(base)).toBe(false)
    expect(await listening(base + 1)).toBe(false)
  })
})
