/**
 * A deployment split across three processes of the built release on PostgreSQL, with a fault
 * proxy on each module-to-module path, for the resilience tests and bench:
 *
 * ```
 *   front:     gateway, catalog, identity, orders, payments, shipping ──(proxies.inventory)──▶ inventory
 *   inventory: inventory (its own database) ──(proxies.catalog)──▶ catalog
 *   catalog:   catalog alone (the second hop; same database as front)
 * ```
 *
 * The front process reads the catalog in process, so a frozen inventory touches only the
 * requests that need it; inventory's calls to the catalog cross a second process boundary, so
 * a deadline can be followed over two hops.
 */
import * as Processes from "./Processes.ts"
import * as FaultProxy from "./FaultProxy.ts"
import * as Services from "./Services.ts"

export const ADMIN = { email: "admin@tessera.test", password: "admin-password-resilience" } as const

/** What every process is given, whatever the test adds. */
const common = {
  TESSERA_SERVICE_SECRET: "resilience-service-secret-resilience",
  TESSERA_ADMIN_EMAIL: ADMIN.email,
  TESSERA_ADMIN_PASSWORD: ADMIN.password,
  TESSERA_PASSWORD_HASH_COST: "10",
  // The tests and the bench send many requests from one client.
  TESSERA_RATE_LIMIT: "100000",
  TESSERA_TRUSTED_PROXIES: "1"
}

export interface SplitDeployment {
  /** The gateway's base URL (front process). */
  readonly gateway: string
  readonly front: Processes.Server
  readonly inventory: Processes.Server
  readonly catalog: Processes.Server
  /** Between front and inventory, and between inventory and catalog. */
  readonly proxies: { readonly inventory: FaultProxy.FaultProxy; readonly catalog: FaultProxy.FaultProxy }
  /** Stops the processes and proxies and drops the databases. */
  readonly stop: () => Promise<void>
}

/**
 * Starts the three processes, each with `common` settings, `env` (every process) and
 * `perProcess` on top. Fails with the reason when PostgreSQL is missing (see `Services`).
 */
export const start = async (options: {
  readonly env?: Record<string, string>
  readonly perProcess?: Partial<Record<"front" | "inventory" | "catalog", Record<string, string>>>
  readonly runtime?: Processes.Runtime
} = {}): Promise<SplitDeployment> => {
  const postgres = await Services.findPostgres()
  if (!postgres.ok) throw new Error(postgres.reason)
  const shared = await Services.createDatabase(postgres.value)
  const own = await Services.createDatabase(postgres.value)
  const [frontPort, inventoryPort, catalogPort] = [await Processes.freePort(), await Processes.freePort(), await Processes.freePort()]
  const proxies = {
    inventory: await FaultProxy.start({ port: inventoryPort }),
    catalog: await FaultProxy.start({ port: catalogPort })
  }
  const env = (process: "front" | "inventory" | "catalog", values: Record<string, string>) => ({
    ...common,
    ...options.env,
    ...values,
    ...options.perProcess?.[process]
  })
  const front = Processes.spawnServer(frontPort, env("front", {
    DATABASE_URL: shared.url,
    TESSERA_MODULES: "gateway,catalog,identity,orders,payments,shipping,notifications",
    TESSERA_PEERS: `inventory=${proxies.inventory.url}`
  }), options.runtime)
  const inventory = Processes.spawnServer(inventoryPort, env("inventory", {
    DATABASE_URL: shared.url,
    TESSERA_INVENTORY_DATABASE_URL: own.url,
    TESSERA_MODULES: "inventory",
    TESSERA_PEERS: `catalog=${proxies.catalog.url}`
  }), options.runtime)
  const catalog = Processes.spawnServer(catalogPort, env("catalog", {
    DATABASE_URL: shared.url,
    TESSERA_MODULES: "catalog"
  }), options.runtime)
  const servers = [front, inventory, catalog]
  const stop = async () => {
    // A frozen process cannot hear SIGTERM.
    for (const server of servers) if (server.process.exitCode === null) server.process.kill("SIGCONT")
    await Promise.all(servers.map((server) => server.stop()))
    await Promise.all([proxies.inventory.close(), proxies.catalog.close()])
    await shared.drop()
    await own.drop()
  }
  try {
    await Promise.all(servers.map((server) => Processes.waitReady(server)))
  } catch (error) {
    await stop()
    throw error
  }
  return { gateway: front.url, front, inventory, catalog, proxies, stop }
}

/** A client of the gateway signed in as the admin, from a client address of its own. */
export const adminClient = async (gateway: string, fetcher: typeof fetch = fetch) => {
  const address = `198.51.100.${Math.floor(Math.random() * 254) + 1}`
  const response = await fetcher(`${gateway}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": address },
    body: JSON.stringify(ADMIN)
  })
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`)
  const token = ((await response.json()) as { accessToken: string }).accessToken
  /** A request to the gateway as the admin; `json` makes it a POST of that body. */
  return (route: string, init: RequestInit & { readonly json?: unknown } = {}) => {
    const { json, ...rest } = init
    const headers = new Headers(rest.headers)
    headers.set("authorization", `Bearer ${token}`)
    headers.set("x-forwarded-for", address)
    if (json !== undefined) headers.set("content-type", "application/json")
    return fetcher(`${gateway}${route}`, {
      ...rest,
      headers,
      ...(json !== undefined ? { method: rest.method ?? "POST", body: JSON.stringify(json) } : {})
    })
  }
}

/** Pauses a process (SIGSTOP): its sockets stay open and its kernel keeps accepting, as a hung process's do. */
export const freeze = (server: Processes.Server) => void server.process.kill("SIGSTOP")
/** Resumes a frozen process (SIGCONT). */
export const thaw = (server: Processes.Server) => void server.process.kill("SIGCONT")
