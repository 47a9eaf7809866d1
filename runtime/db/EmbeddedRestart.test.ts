/**
 * A later start on the embedded database trusts what an earlier start left there only as far as
 * it can tell it is this build's: a module whose schema carries this build's bootstrap marker
 * and whose ledger reaches its newest migration is used as it is; anything else is bootstrapped
 * and migrated again.
 */
import { ConfigProvider, Effect, Layer, ManagedRuntime, type Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Database from "./Database.ts"
import { EmbeddedPostgres } from "./EmbeddedPostgres.ts"
import * as ModuleSql from "./ModuleSql.ts"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-restart-"))
const migrations = path.join(root, "migrations")
const dataDir = path.join(root, "data")
const write = (module: string, file: string, sql: string) => {
  fs.mkdirSync(path.join(migrations, module), { recursive: true })
  fs.writeFileSync(path.join(migrations, module, file), sql)
}
write("alpha", "0001_create_things.sql", `CREATE TABLE things (id int PRIMARY KEY, label text NOT NULL);`)
write("alpha", "0002_seed.sql", `INSERT INTO things VALUES (1, 'alpha');`)

const config = Layer.setConfigProvider(ConfigProvider.fromMap(new Map([
  ["TESSERA_MIGRATIONS_DIR", migrations],
  ["TESSERA_DATA_DIR", dataDir]
])))

describe("a later start on the embedded database", () => {
  let runtime: ManagedRuntime.ManagedRuntime<EmbeddedPostgres, unknown>
  const run = <A, E>(effect: Effect.Effect<A, E, EmbeddedPostgres | Scope.Scope>) =>
    runtime.runPromise(Effect.scoped(effect).pipe(Effect.provide(config)) as Effect.Effect<A, E, EmbeddedPostgres>)
  const admin = <A extends object>(statement: string) =>
    run(Effect.flatMap(EmbeddedPostgres, (sql) => sql.unsafe<A>(statement)))
  const marker = async () =>
    (await admin<{ marker: string | null }>(`SELECT obj_description('alpha'::regnamespace, 'pg_namespace') AS marker`))[0]!.marker
  const ledger = () =>
    run(Effect.flatMap(Database.open("alpha"), (alpha) => alpha.sql<{ id: number }>`SELECT migration_id AS id FROM effect_sql_migrations ORDER BY 1`))
      .then((rows) => rows.map((row) => row.id))

  beforeAll(async () => {
    fs.mkdirSync(dataDir)
    runtime = ManagedRuntime.make(EmbeddedPostgres.layer.pipe(Layer.provide(config)))
    await runtime.runtime()
    await run(Database.open("alpha"))
  })
  afterAll(async () => {
    await runtime?.dispose()
    fs.rmSync(root, { recursive: true, force: true })
  })

  it("finds the schema marked with this build's bootstrap", async () => {
    expect(await marker()).toBe(ModuleSql.bootstrapMarker("alpha"))
  })

  it("uses a current module as it is: nothing migrated again, its data and rights intact", async () => {
    const rows = await run(Effect.gen(function*() {
      const alpha = yield* Database.open("alpha")
      return yield* alpha.sql<{ label: string; user: string }>`SELECT label, current_user AS user FROM things`
    }))
    expect(rows).toEqual([{ label: "alpha", user: "tessera_alpha" }])
    expect(await ledger()).toEqual([1, 2])
  })

  it("bootstraps again a schema that another build (or none) marked: its grants come back", async () => {
    await admin(`REVOKE ALL ON SCHEMA alpha FROM tessera_alpha; COMMENT ON SCHEMA alpha IS 'tessera bootstrap of another build'`)
    const denied = await run(Effect.flip(Effect.gen(function*() {
      const sql = yield* EmbeddedPostgres
      return yield* sql.withTransaction(
        Effect.zipRight(sql.unsafe(`SET LOCAL ROLE tessera_alpha`), sql.unsafe(`SELECT * FROM alpha.things`))
      )
    })))
    expect(denied._tag).toBe("SqlError")
    const rows = await run(Effect.flatMap(Database.open("alpha"), (alpha) => alpha.sql<{ label: string }>`SELECT label FROM things`))
    expect(rows).toEqual([{ label: "alpha" }])
    expect(await marker()).toBe(ModuleSql.bootstrapMarker("alpha"))
  })

  it("applies a migration added since the last start", async () => {
    write("alpha", "0003_more.sql", `INSERT INTO things VALUES (2, 'alpha-2');`)
    const labels = await run(Effect.gen(function*() {
      const alpha = yield* Database.open("alpha")
      return yield* alpha.sql<{ label: string }>`SELECT label FROM things ORDER BY id`
    }))
    expect(labels.map((row) => row.label)).toEqual(["alpha", "alpha-2"])
    expect(await ledger()).toEqual([1, 2, 3])
  })
})
