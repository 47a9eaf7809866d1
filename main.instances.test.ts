/**
 * Two instances of one module, end to end: the built release as three processes on one
 * PostgreSQL database, the catalog run twice and the rest (gateway included) in a third that
 * locates it as `catalog=http://127.0.0.1:A|http://127.0.0.1:B` (Topology.ts). The front's calls
 * to the catalog are spread over both (the admin view counts each instance's calls), and once one
 * instance is killed (SIGKILL, under load) every request still succeeds: product reads are
 * idempotent, so a call cut by the kill is retried on the other instance, and new calls go there
 * at once. No read is answered from the gateway's stale copy (`Tessera-Stale`): they were served.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as SplitDeployment from "./runtime/testing/SplitDeployment.ts"

const postgres = await Services.findPostgres()
const skipped = postgres.ok ? undefined : Services.unavailable("PostgreSQL", postgres.reason)

const common = {
  TESSERA_SERVICE_SECRET: "instances-service-secret-0123456789abcdef",
  TESSERA_ADMIN_EMAIL: SplitDeployment.ADMIN.email,
  TESSERA_ADMIN_PASSWORD: SplitDeployment.ADMIN.password,
  TESSERA_PASSWORD_HASH_COST: "10",
  TESSERA_RATE_LIMIT: "100000",
  TESSERA_TRUSTED_PROXIES: "1"
}

interface InstanceView {
  readonly url: string
  readonly connected: boolean
  readonly outstanding: number
  readonly breaker: { readonly state: string; readonly calls: number; readonly failures: number }
}

if (skipped !== undefined) {
  describe.skip("two instances of the catalog", () => it(skipped, () => {}))
} else {
  describe("two instances of the catalog behind one location", () => {
    let front: Processes.Server
    let catalogs: ReadonlyArray<Processes.Server>
    let drop: () => Promise<void>
    let databaseUrl: string
    let admin: Awaited<ReturnType<typeof SplitDeployment.adminClient>>
    let productId: string

    beforeAll(async () => {
      if (!postgres.ok) return
      const database = await Services.createDatabase(postgres.value)
      drop = database.drop
      databaseUrl = database.url
      const [frontPort, a, b] = [await Processes.freePort(), await Processes.freePort(), await Processes.freePort()]
      catalogs = [a, b].map((port) =>
        Processes.spawnServer(port, { ...common, DATABASE_URL: database.url, TESSERA_MODULES: "catalog" })
      )
      front = Processes.spawnServer(frontPort, {
        ...common,
        DATABASE_URL: database.url,
        TESSERA_MODULES: "gateway,identity,inventory,orders,payments,shipping,notifications",
        TESSERA_PEERS: `catalog=http://127.0.0.1:${a}|http://127.0.0.1:${b}`
      })
      await Processes.waitAllReady([...catalogs, front])
      admin = await SplitDeployment.adminClient(front.url)
      const created = await admin("/v1/products", {
        json: { sku: `TWO-${crypto.randomUUID().slice(0, 8)}`, name: "Twice served", priceCents: 500, currency: "EUR" }
      })
      expect(created.status).toBe(201)
      productId = ((await created.json()) as { id: string }).id
    })
    afterAll(async () => {
      await Promise.all([front, ...(catalogs ?? [])].filter((s) => s !== undefined).map((s) => s.stop()))
      await drop?.()
    })

    const instances = async (): Promise<ReadonlyArray<InstanceView>> => {
      const response = await admin("/v1/admin/resilience")
      expect(response.status).toBe(200)
      const body = (await response.json()) as { dependencies: ReadonlyArray<{ target: string; breaker: unknown; instances?: ReadonlyArray<InstanceView> }> }
      const catalog = body.dependencies.find((d) => d.target === "catalog")!
      expect(catalog.breaker).toBeNull()
      return catalog.instances!
    }

    /** A product read through the gateway: its status, and whether it came from the stale copy. */
    const read = async () => {
      const response = await fetch(`${front.url}/v1/products/${productId}`)
      await response.arrayBuffer()
      return { status: response.status, stale: response.headers.get("tessera-stale") }
    }

    it("spreads the calls over both instances, and lists them in health and the admin view", async () => {
      const before = await instances()
      for (let i = 0; i < 40; i++) expect(await read()).toEqual({ status: 200, stale: null })
      const after = await instances()
      expect(after.map((i) => i.url).sort()).toEqual(catalogs.map((c) => c.url).sort())
      const served = after.map((i, n) => i.breaker.calls - before[n]!.breaker.calls)
      // Sequential calls: each instance takes its turn (least outstanding, ties to the one chosen longest ago).
      expect(served.reduce((x, y) => x + y)).toBe(40)
      for (const count of served) expect(count).toBeGreaterThanOrEqual(15)
      expect(after.every((i) => i.connected && i.breaker.state === "Closed")).toBe(true)

      const health = await fetch(`${front.url}/health/ready`)
      expect(health.status).toBe(200)
      const catalog = ((await health.json()) as { modules: ReadonlyArray<Record<string, any>> }).modules.find((m) => m.name === "catalog")!
      expect(catalog).toMatchObject({ ready: true, detail: "2 of 2 instances answer", location: `${catalogs[0]!.url}|${catalogs[1]!.url}` })
      expect(catalog.instances.map((i: { url: string; ready: boolean }) => [i.url, i.ready])).toEqual(catalogs.map((c) => [c.url, true]))
    })

    it("keeps answering every request when one instance is killed under load", async () => {
      const results: Array<{ status: number; stale: string | null }> = []
      let running = true
      const worker = async () => {
        while (running) results.push(await read())
      }
      const workers = Array.from({ length: 4 }, worker)
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      const before = results.length
      catalogs[0]!.process.kill("SIGKILL")
      await catalogs[0]!.exited
      await new Promise((resolve) => setTimeout(resolve, 2_000))
      running = false
      await Promise.all(workers)
      console.log(`${results.length} reads, ${results.length - before} of them after the kill`)
      expect(results.length - before).toBeGreaterThan(20)
      const failed = results.filter((r) => r.status !== 200 || r.stale !== null)
      expect(failed).toEqual([])

      // Writes (not idempotent, never retried) go to the instance that is left.
      for (let i = 0; i < 5; i++) {
        const created = await admin("/v1/products", {
          json: { sku: `AFTER-${crypto.randomUUID().slice(0, 8)}`, name: "After the kill", priceCents: 100, currency: "EUR" }
        })
        expect(created.status).toBe(201)
      }

      const view = await instances()
      // The killed instance's window counts the attempts it failed: the calls cut in flight, each retried on the other.
      console.log(`attempts cut by the kill (retried): ${view.find((i) => i.url === catalogs[0]!.url)?.breaker.failures}`)
      expect(view.find((i) => i.url === catalogs[0]!.url)).toMatchObject({ connected: false, outstanding: 0 })
      expect(view.find((i) => i.url === catalogs[1]!.url)).toMatchObject({ connected: true })
      const health = await fetch(`${front.url}/health/ready`)
      expect(health.status).toBe(200)
      const catalog = ((await health.json()) as { modules: ReadonlyArray<Record<string, any>> }).modules.find((m) => m.name === "catalog")!
      expect(catalog).toMatchObject({ ready: true, detail: "1 of 2 instances answer" })
    })

    it("locates the catalog by a DNS name: each address it resolves to is an instance", async () => {
      const left = catalogs[1]!
      const inventory = Processes.spawnServer(await Processes.freePort(), {
        ...common,
        // A second inventory instance, on the same database as the first (in the front process).
        DATABASE_URL: databaseUrl,
        TESSERA_MODULES: "inventory",
        TESSERA_PEERS: `catalog=dns://localhost:${left.port}`,
        TESSERA_DNS_REFRESH: "1 second"
      })
      try {
        await Processes.waitReady(inventory)
        const health = await fetch(`${inventory.url}/health/ready`)
        expect(health.status).toBe(200)
        const catalog = ((await health.json()) as { modules: ReadonlyArray<Record<string, any>> }).modules.find((m) => m.name === "catalog")!
        expect(catalog).toMatchObject({ ready: true, location: `dns://localhost:${left.port}` })
        // localhost: 127.0.0.1, and ::1 where the system resolves it too (the catalog listens on both).
        expect(catalog.instances.map((i: { url: string }) => i.url)).toContain(`http://127.0.0.1:${left.port}`)
        expect(catalog.instances.every((i: { ready: boolean }) => i.ready)).toBe(true)
      } finally {
        await inventory.stop()
      }
    })
  })
}
