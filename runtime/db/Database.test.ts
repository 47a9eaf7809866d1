/**
 * Each module's data is private: on PostgreSQL and on embedded PostgreSQL, a module's client
 * reaches its own schema and gets a permission error (42501) from any other. Migrations apply
 * once, in order, also when processes start together.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, type SqlError } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { ConfigProvider, Deferred, Effect, Fiber, Layer, ManagedRuntime, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Services from "../testing/Services.ts"
import * as Database from "./Database.ts"
import * as ModuleSql from "./ModuleSql.ts"
import * as PgError from "./PgError.ts"

const migrations = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-migrations-"))
const write = (module: string, file: string, sql: string) => {
  fs.mkdirSync(path.join(migrations, module), { recursive: true })
  fs.writeFileSync(path.join(migrations, module, file), sql)
}
for (const module of ["alpha", "beta"]) {
  write(module, "0001_create_things.sql", `CREATE TABLE things (id int PRIMARY KEY, label text NOT NULL);`)
  write(module, "0002_seed.sql", `INSERT INTO things VALUES (1, '${module}');`)
}
afterAll(() => fs.rmSync(migrations, { recursive: true, force: true }))

const code = (error: SqlError.SqlError) => PgError.code(error)

for (const { acquire, name } of await Services.databases()) {
  if (typeof acquire === "string") {
    describe.skip(`module databases on ${name}`, () => it(acquire, () => {}))
    continue
  }

  describe(`module databases on ${name}`, () => {
    let database: Services.TestDatabase
    let runtime: ManagedRuntime.ManagedRuntime<never, unknown>
    const config = (extra: Record<string, string> = {}) =>
      Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({
        TESSERA_MIGRATIONS_DIR: migrations,
        ...(database.database._tag === "Postgres"
          ? { DATABASE_URL: database.database.url }
          : { TESSERA_DATA_DIR: database.database.dataDir }),
        ...extra
      }))))
    const run = <A, E>(effect: Effect.Effect<A, E, any>) =>
      runtime.runPromise(Effect.scoped(effect).pipe(Effect.provide(config())) as Effect.Effect<A, E>)

    beforeAll(async () => {
      database = await acquire()
      runtime = Services.runtimeOn(database, config())
      // Start the embedded database here: under load it takes longer than a test may.
      await runtime.runtime()
    })
    afterAll(async () => {
      await runtime?.dispose()
      await database?.release()
    })

    it("applies each module's migrations in its own schema, owned by its own role", async () => {
      const rows = await run(Effect.gen(function*() {
        const alpha = yield* Database.open("alpha")
        return yield* alpha.sql<{ label: string; owner: string; schema: string }>`
          SELECT label, (SELECT tableowner FROM pg_tables WHERE tablename = 'things' AND schemaname = 'alpha') AS owner,
                 current_schema() AS schema
          FROM things`
      }))
      expect(rows).toEqual([{ label: "alpha", owner: "tessera_alpha", schema: "alpha" }])
    })

    it("refuses a module another module's tables: permission denied, in both directions", async () => {
      const denied = await run(Effect.gen(function*() {
        const alpha = yield* Database.open("alpha")
        const beta = yield* Database.open("beta")
        return [
          code(yield* Effect.flip(alpha.sql`SELECT * FROM beta.things`)),
          code(yield* Effect.flip(beta.sql`SELECT * FROM alpha.things`)),
          code(yield* Effect.flip(beta.sql`UPDATE alpha.things SET label = 'stolen'`)),
          code(yield* Effect.flip(alpha.sql.withTransaction(alpha.sql`SELECT * FROM beta.things`))),
          code(yield* Effect.flip(alpha.sql`CREATE TABLE public.leak (id int)`))
        ]
      }))
      expect(denied).toEqual(["42501", "42501", "42501", "42501", "42501"])
      const labels = await run(Effect.flatMap(Database.open("alpha"), (alpha) => alpha.sql`SELECT label FROM things`))
      expect(labels).toEqual([{ label: "alpha" }])
    })

    it("applies each migration once, and a new file on the next start", async () => {
      await run(Database.open("beta"))
      write("beta", "0003_more.sql", `INSERT INTO things VALUES (2, 'beta-2');`)
      const after = await run(Effect.gen(function*() {
        const beta = yield* Database.open("beta")
        const ledger = yield* beta.sql<{ id: number }>`SELECT migration_id AS id FROM effect_sql_migrations ORDER BY 1`
        const things = yield* beta.sql<{ n: number }>`SELECT count(*)::int AS n FROM things`
        return { ledger: ledger.map((r) => r.id), things: things[0]!.n, latest: beta.latest }
      }))
      expect(after).toEqual({ ledger: [1, 2, 3], things: 2, latest: 3 })
    })

    it("migrates once when several processes start together", async () => {
      write("gamma", "0001_create_things.sql", `CREATE TABLE things (id int PRIMARY KEY);`)
      write("gamma", "0002_seed.sql", `INSERT INTO things VALUES (1);`)
      const counts = await run(Effect.gen(function*() {
        const opened = yield* Effect.all([Database.open("gamma"), Database.open("gamma"), Database.open("gamma")], {
          concurrency: "unbounded"
        })
        return yield* opened[0]!.sql<{ n: number }>`SELECT count(*)::int AS n FROM things`
      }))
      expect(counts).toEqual([{ n: 1 }])
    })

    it.runIf(name === "PostgreSQL")("bootstraps a module on a second database of the server while the first rewrites its role", async () => {
      // A role is the server's: its settings row is one for every database, and each database's
      // bootstrap (serialised within its database only) rewrites it. Held by a transaction on the
      // first database, the second's bootstrap waits for it, then is refused ("tuple concurrently
      // updated") and must try again.
      write("epsilon", "0001_create_things.sql", `CREATE TABLE things (id int PRIMARY KEY);`)
      await run(Database.open("epsilon"))
      const server = await Services.findPostgres()
      if (!server.ok) throw new Error(server.reason)
      const second = await Services.createDatabase(server.value)
      try {
        const url = database.database._tag === "Postgres" ? database.database.url : ""
        const opened = await runtime.runPromise(Effect.scoped(Effect.gen(function*() {
          const admin = yield* PgClient.make({ url: Redacted.make(url), maxConnections: 1 })
          const release = yield* Deferred.make<void>()
          const holding = yield* Deferred.make<void>()
          const holder = yield* Effect.fork(admin.withTransaction(Effect.gen(function*() {
            yield* admin.unsafe(`ALTER ROLE ${ModuleSql.roleOf("epsilon")} SET search_path = epsilon`)
            yield* Deferred.succeed(holding, undefined)
            yield* Deferred.await(release)
          })))
          yield* Deferred.await(holding)
          const opening = yield* Effect.fork(
            Effect.scoped(Effect.flatMap(Database.open("epsilon"), (db) => db.sql<{ n: number }>`SELECT count(*)::int AS n FROM things`))
              .pipe(Effect.provide(config({ DATABASE_URL: second.url })))
          )
          yield* Effect.sleep("500 millis")
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(holder)
          return yield* Fiber.join(opening)
        }).pipe(Effect.provide(Reactivity.layer))) as Effect.Effect<ReadonlyArray<{ n: number }>, unknown>)
        expect(opened).toEqual([{ n: 0 }])
      } finally {
        await second.drop()
      }
    })

    it("refuses a migration file that is not named NNNN_name.sql", async () => {
      write("delta", "first.sql", "SELECT 1;")
      const error = await run(Effect.flip(Database.open("delta")))
      expect(String((error as { message?: string }).message)).toContain("NNNN_name.sql")
    })

    it("lets no statement outside the module's schema slip through a transaction on its client", async () => {
      const result = await run(Effect.gen(function*() {
        const alpha = yield* Database.open("alpha")
        return yield* alpha.sql.withTransaction(Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          return yield* sql<{ user: string }>`SELECT current_user AS user`
        })).pipe(Effect.provideService(SqlClient.SqlClient, alpha.sql))
      }))
      expect(result).toEqual([{ user: "tessera_alpha" }])
    })
  })
}
