/**
 * Serves modules in the test's own process, exactly as `tessera serve` would (the gateway, the
 * edge, health, RPC endpoints), on a free port: cheaper than spawning a process when a test
 * needs HTTP but not a process boundary.
 */
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as Host from "../Host.ts"
import type { Module } from "../Module.ts"
import * as Topology from "../Topology.ts"
import * as Processes from "./Processes.ts"
import * as Services from "./Services.ts"

export interface TestServer {
  readonly url: string
  /** Stops the server and closes its databases. */
  readonly close: () => Promise<void>
}

/**
 * Serves `modules` with `config` as the process's whole configuration (no environment is read),
 * and resolves once the server listens; `PORT` is chosen here unless `config` sets it (two
 * servers that call each other each need the other's port first).
 */
export const start = async (
  modules: ReadonlyArray<Module.Any>,
  config: Readonly<Record<string, string>>
): Promise<TestServer> => {
  const port = config.PORT === undefined ? await Processes.freePort() : Number(config.PORT)
  const provider = ConfigProvider.fromMap(new Map(Object.entries({ ...config, PORT: String(port) })))
  const server = Layer.unwrapEffect(
    Effect.map(Topology.fromConfig(Host.nodes(modules)), (topology) => Host.serve(modules, topology))
  ).pipe(Layer.provide(Layer.setConfigProvider(provider)))
  const runtime = ManagedRuntime.make(server as Layer.Layer<never, unknown>)
  await runtime.runtime()
  return { url: `http://127.0.0.1:${port}`, close: () => runtime.dispose() }
}

/**
 * `start` on a fresh test database: PostgreSQL when there is one (quicker to start), else
 * embedded. `close` also drops the database.
 */
export const startOnTestDatabase = async (
  modules: ReadonlyArray<Module.Any>,
  config: Readonly<Record<string, string>> = {}
): Promise<TestServer> => {
  const found = (await Services.databases()).find((d) => typeof d.acquire !== "string")!
  const db = await (found.acquire as () => Promise<Services.TestDatabase>)()
  try {
    const server = await start(modules, {
      ...(db.database._tag === "Postgres" ? { DATABASE_URL: db.database.url } : { TESSERA_DATA_DIR: db.database.dataDir }),
      ...config
    })
    return { url: server.url, close: () => server.close().finally(db.release) }
  } catch (error) {
    await db.release()
    throw error
  }
}
