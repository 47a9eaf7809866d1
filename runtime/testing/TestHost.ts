/**
 * Hosts modules in the test's own process, on a database of the test's choosing, and provides
 * their clients: module tests call a module through its public client exactly as another module
 * would. Modules they call but the test does not host are stubbed with `stub`.
 */
import { Cause, ConfigProvider, type Context, Effect, Either, Layer, ManagedRuntime } from "effect"
import type { SqlClient } from "@effect/sql"
import { afterAll, beforeAll, describe, it } from "vitest"
import * as ModuleDatabase from "../db/Database.ts"
import { EmbeddedPostgres } from "../db/EmbeddedPostgres.ts"
import * as Host from "../Host.ts"
import * as Caller from "../security/Caller.ts"
import type { Module, ModuleClient } from "../Module.ts"
import * as Settings from "../Settings.ts"
import * as Topology from "../Topology.ts"
import * as Services from "./Services.ts"

/** Where the hosted modules keep their data. */
export type Database = { readonly _tag: "Postgres"; readonly url: string } | { readonly _tag: "Embedded"; readonly dataDir: string }

export interface Stub {
  readonly module: string
  readonly layer: Layer.Layer<never>
}

/**
 * A client of `tag` that answers the given methods and dies, naming the call, on any other.
 */
export const stub = <T extends ModuleClient.Any>(
  tag: T,
  methods: { readonly [K in keyof Context.Tag.Service<T>]?: (payload: any) => Effect.Effect<unknown, unknown> }
): Stub => ({
  module: tag.module,
  layer: Layer.succeed(
    tag as Context.Tag<unknown, object>,
    new Proxy(methods as object, {
      get: (target, key) =>
        key in target
          ? (target as Record<string | symbol, unknown>)[key]
          : () => Effect.die(new Cause.UnknownException(`stubbed ${tag.module} has no ${String(key)}`))
    })
  ) as Layer.Layer<never>
})

/**
 * The clients of `modules`, hosted in process on `database`, with `stubs` for the modules they
 * call but the test does not host. `config` adds entries to (or overrides) the fixed
 * configuration the modules read.
 */
export const layer = (
  modules: ReadonlyArray<Module.Any>,
  database: Database,
  stubs: ReadonlyArray<Stub> = [],
  config: Readonly<Record<string, string>> = {}
): Layer.Layer<any, unknown> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const nodes = [
        ...Host.nodes(modules),
        ...stubs.map((s): Topology.ModuleNode => ({ name: s.module, calls: [], exposesHttp: false }))
      ]
      const topology = yield* Either.match(
        Topology.resolve(nodes, {
          hosted: modules.map((m) => m.name).join(","),
          peers: stubs.map((s) => `${s.module}=http://stub.invalid`).join(",")
        }),
        { onLeft: Effect.die, onRight: Effect.succeed }
      )
      const host = Host.make(modules, topology, {
        clients: new Map(stubs.map((s) => [s.module, s.layer])),
        amqpUrl: yield* Effect.orDie(Settings.amqpUrl.config)
      })
      // The embedded database stays in the runtime's context, for `moduleSql`.
      return Layer.merge(host.clients, host.messaging).pipe(
        Layer.provideMerge(database._tag === "Embedded" ? EmbeddedPostgres.layer : Layer.empty)
      ) as Layer.Layer<any, unknown>
    })
  ).pipe(
    Layer.provide(
      Layer.setConfigProvider(
        ConfigProvider.fromMap(
          new Map([
            database._tag === "Postgres" ? ["DATABASE_URL", database.url] : ["TESSERA_DATA_DIR", database.dataDir],
            ...Object.entries(config)
          ])
        )
      )
    )
  )

/**
 * Declares one suite per test database (PostgreSQL, embedded), each with its own fresh database
 * and a runtime built from `layer`; `body` receives `run`, which runs an effect in that runtime,
 * and `restart`, which shuts that runtime down (as a process does on SIGTERM) and builds a new
 * one on the same database, resolving to how long the shutdown took in milliseconds.
 */
export const describeOnDatabases = <R>(
  title: string,
  layer: (database: Database) => Layer.Layer<R, unknown>,
  body: (run: <A, E>(effect: Effect.Effect<A, E, R>) => Promise<A>, restart: () => Promise<number>) => void
) => {
  for (const { acquire, name } of databases) {
    if (typeof acquire === "string") {
      describe.skip(`${title} on ${name}`, () => it(acquire, () => {}))
      continue
    }
    describe(`${title} on ${name}`, () => {
      let database: Services.TestDatabase | undefined
      let runtime: ManagedRuntime.ManagedRuntime<R, unknown> | undefined
      beforeAll(async () => {
        database = await acquire()
        runtime = ManagedRuntime.make(layer(database.database))
        await runtime.runtime()
      })
      afterAll(async () => {
        await runtime?.dispose()
        await database?.release()
      })
      const restart = async () => {
        const started = Date.now()
        await runtime!.dispose()
        const took = Date.now() - started
        runtime = ManagedRuntime.make(layer(database!.database))
        await runtime.runtime()
        return took
      }
      body((effect) => runtime!.runPromise(effect), restart)
    })
  }
}

/**
 * Runs `f` with a client of `module`'s own schema, as the module sees it (its role, its
 * search path): for a test that sets up what no public call can, such as rows written within one
 * millisecond. Run in a runtime built from `layer`.
 */
export const moduleSql = <A, E, R>(module: string, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E, R>) =>
  Effect.scoped(Effect.flatMap(ModuleDatabase.open(module), (db) => f(db.sql)))

/**
 * Gives the rows of `module`'s `table` whose ids are `ids` creation instants one microsecond
 * apart within one millisecond, in the order of `ids` from the newest: rows a cursor that held
 * milliseconds could not tell apart (the next page lost those just older than a page's last).
 */
export const crowdCreatedAt = (module: string, table: string, ids: ReadonlyArray<string>) =>
  moduleSql(module, (sql) =>
    Effect.forEach(ids, (id, i) =>
      sql`UPDATE ${sql(table)} SET created_at = timestamptz '2026-11-26 10:00:00.000900+00' - ${i} * interval '1 microsecond'
          WHERE id = ${id}`, { discard: true }))

/** The admin a module test acts as when who calls is not what it tests. */
export const ADMIN = new Caller.Caller({ kind: "user", id: "test-admin", role: "admin" })

/** `run` on behalf of `ADMIN` (modules check their callers: `Caller.requireAdmin` and the like). */
export const asAdmin = <R>(run: <A, E>(effect: Effect.Effect<A, E, R>) => Promise<A>) =>
<A, E>(effect: Effect.Effect<A, E, R>): Promise<A> => run(Caller.withCaller(ADMIN)(effect))

const databases = await Services.databases()
