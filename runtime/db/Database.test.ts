/**
 * Each module's data is private: on PostgreSQL and on embedded PostgreSQL, a module's client
 * reaches its own schema and gets a permission error (42501) from any other. Migrations apply
 * once, in order, also when processes start together.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Services from "../testing/Services.ts"
import * as Database from "./Database.ts"
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
