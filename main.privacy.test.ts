/**
 * Every module of this build keeps its data to itself: after all migrations have run, each
 * module's database client reads its own tables and gets permission denied (42501) on every
 * table of every other module, for every ordered pair of modules, on PostgreSQL (login roles)
 * and on embedded PostgreSQL (a role per transaction). New modules and tables join the check by
 * being in `main.ts` and `migrations/`.
 */
import { type SqlError } from "@effect/sql"
import { ConfigProvider, Context, Effect, Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "./main.ts"
import type * as Database from "./runtime/db/Database.ts"
import { open } from "./runtime/db/Database.ts"
import { EmbeddedPostgres } from "./runtime/db/EmbeddedPostgres.ts"
import * as PgError from "./runtime/db/PgError.ts"
import * as Services from "./runtime/testing/Services.ts"

const withData = modules.filter((m) => m.database).map((m) => m.name)

/** Every module's database, opened and migrated as a process would. */
const Opened = Context.GenericTag<ReadonlyMap<string, Database.ModuleDatabase>>("test/Opened")

for (const { acquire, name } of await Services.databases()) {
  if (typeof acquire === "string") {
    describe.skip(`module privacy on ${name}`, () => it(acquire, () => {}))
    continue
  }

  describe(`module privacy on ${name}`, () => {
    let database: Services.TestDatabase
    let runtime: ManagedRuntime.ManagedRuntime<ReadonlyMap<string, Database.ModuleDatabase>, unknown>
    let opened: ReadonlyMap<string, Database.ModuleDatabase>

    beforeAll(async () => {
      database = await acquire()
      const config = Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(
        database.database._tag === "Postgres"
          ? { DATABASE_URL: database.database.url }
          : { TESSERA_DATA_DIR: database.database.dataDir }
      ))))
      const embedded = database.database._tag === "Embedded" ? EmbeddedPostgres.layer : Layer.empty
      const databases = Layer.scoped(
        Opened,
        Effect.map(Effect.forEach(withData, open), (all) => new Map(all.map((d) => [d.module, d] as const)))
      )
      runtime = ManagedRuntime.make(
        databases.pipe(Layer.provide(embedded), Layer.provide(config)) as Layer.Layer<ReadonlyMap<string, Database.ModuleDatabase>>
      )
      opened = await runtime.runPromise(Opened)
    })
    afterAll(async () => {
      await runtime?.dispose()
      await database?.release()
    })

    const tablesOf = (module: string) =>
      runtime.runPromise(opened.get(module)!.sql<{ table_name: string }>`
        SELECT table_name FROM information_schema.tables
        WHERE table_schema = ${module} AND table_type = 'BASE TABLE' AND table_name <> 'effect_sql_migrations'
        ORDER BY table_name`.pipe(Effect.map((rows) => rows.map((r) => r.table_name))))

    it("each module reads its own tables", async () => {
      for (const module of withData) {
        const tables = await tablesOf(module)
        expect(tables.length, `${module} has tables`).toBeGreaterThan(0)
        const sql = opened.get(module)!.sql
        for (const table of tables) {
          await runtime.runPromise(sql`SELECT count(*) FROM ${sql(module)}.${sql(table)}`)
        }
      }
    })

    it("no module reads another module's tables: 42501 for every pair and every table", async () => {
      const outcomes: Array<string> = []
      const expected: Array<string> = []
      for (const owner of withData) {
        const tables = await tablesOf(owner)
        for (const reader of withData.filter((m) => m !== owner)) {
          const sql = opened.get(reader)!.sql
          for (const table of tables) {
            const error = await runtime.runPromise(
              Effect.flip(sql`SELECT * FROM ${sql(owner)}.${sql(table)} LIMIT 1`) as Effect.Effect<SqlError.SqlError>
            )
            outcomes.push(`${reader} → ${owner}.${table}: ${PgError.code(error)}`)
            expected.push(`${reader} → ${owner}.${table}: 42501`)
          }
        }
      }
      expect(withData.length).toBeGreaterThanOrEqual(3)
      expect(outcomes).toEqual(expected)
    })
  })
}
