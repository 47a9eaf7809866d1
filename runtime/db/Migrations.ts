/**
 * Each module's migrations: `migrations/<module>/NNNN_name.sql`, applied in order by the
 * @effect/sql Migrator over the module's own client (so its objects land in its schema, owned by
 * its role) and recorded in `<module>.effect_sql_migrations`.
 *
 * A built release carries them in its code (`BundledMigrations.ts`); the source reads them from
 * disk. `TESSERA_MIGRATIONS_DIR` makes either read a folder instead.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { bundled } from "./BundledMigrations.ts"
import * as Settings from "../Settings.ts"

export const LEDGER = "effect_sql_migrations"

const FILE = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/

export interface MigrationFile {
  readonly id: number
  readonly name: string
  /** Where it came from, for messages: a path, or the release's bundle. */
  readonly source: string
  readonly sql: Effect.Effect<string>
}

/** A `migrations/` folder to read instead of the migrations the build carries. */
export const directory = Settings.migrationsDir.config

/** The `migrations/` tree of the source checkout, beside `runtime/`. */
const sourceDirectory = () => fileURLToPath(new URL("../../migrations", import.meta.url))

const failed = (message: string, cause?: unknown) =>
  new Migrator.MigrationError({ reason: "failed", message, cause })

/** The module's migrations in id order, from the bundle or a folder; a folder that is missing means none. */
export const files = (module: string) =>
  Effect.gen(function*() {
    const folder = yield* directory
    const found: Array<MigrationFile> = []
    if (Option.isNone(folder) && bundled !== undefined) {
      for (const migration of bundled.filter((m) => m.module === module)) {
        const match = FILE.exec(migration.file)!
        found.push({ id: Number(match[1]), name: match[2]!, source: `${module}/${migration.file} (bundled)`, sql: Effect.succeed(migration.sql) })
      }
    } else {
      const dir = path.join(path.resolve(Option.getOrElse(folder, sourceDirectory)), module)
      const names = yield* Effect.tryPromise({
        try: () => fs.readdir(dir),
        catch: (cause) => failed(`cannot read ${dir}`, cause)
      }).pipe(
        Effect.catchIf((e) => (e.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT", () => Effect.succeed([]))
      )
      for (const name of names) {
        const match = FILE.exec(name)
        if (match === null) {
          if (name.endsWith(".sql")) return yield* failed(`${dir}/${name} is not named NNNN_name.sql`)
          continue
        }
        const file = path.join(dir, name)
        found.push({ id: Number(match[1]), name: match[2]!, source: file, sql: Effect.promise(() => fs.readFile(file, "utf8")) })
      }
    }
    found.sort((a, b) => a.id - b.id)
    const duplicate = found.find((file, i) => i > 0 && found[i - 1]!.id === file.id)
    if (duplicate) return yield* failed(`two migrations of ${module} have id ${duplicate.id}`)
    return found
  }).pipe(Effect.mapError((e) => (e._tag === "MigrationError" ? e : failed(String(e), e))))

const loader = (migrations: ReadonlyArray<MigrationFile>): Migrator.Loader =>
  Effect.succeed(
    migrations.map((file): Migrator.ResolvedMigration => [
      file.id,
      file.name,
      Effect.map(file.sql, (text) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(text)))
    ])
  )

const migrator = Migrator.make({})

/**
 * Tables the runtime owns inside a module's schema (the saga layer's, later an outbox's): their
 * migrations are part of the runtime's code, not of `migrations/`, and are recorded in a ledger
 * of their own (`ledger`), so that their ids never meet the module's. A runtime source is
 * applied after the module's own migrations, with the module's client (objects owned by its
 * role, in its schema), to every hosted module that asks for it (`Database.open`).
 */
export interface RuntimeSource {
  /** For messages and the lock: `saga`. */
  readonly name: string
  /** The ledger table in the module's schema: `saga_migrations`. */
  readonly ledger: string
  readonly migrations: ReadonlyArray<{ readonly id: number; readonly name: string; readonly sql: string }>
}

/** A runtime source's migrations as `run` takes them. */
export const filesOf = (source: RuntimeSource): ReadonlyArray<MigrationFile> =>
  source.migrations.map((m) => ({ id: m.id, name: m.name, source: `runtime ${source.name}/${m.id}_${m.name}`, sql: Effect.succeed(m.sql) }))

/**
 * Applies the module's pending `migrations` (from `files`) with its own client. With `lock`, a
 * session-level advisory lock (which needs a pool of two) keeps processes that start together
 * from racing to create the ledger. `ledger` names another ledger than the module's own (a
 * runtime source's).
 */
export const run = (
  module: string,
  migrations: ReadonlyArray<MigrationFile>,
  options: { readonly lock: boolean; readonly ledger?: string }
) =>
  Effect.gen(function*() {
    const ledger = options.ledger ?? LEDGER
    const apply = migrator({ loader: loader(migrations), table: ledger })
    if (!options.lock) return yield* apply
    const sql = yield* SqlClient.SqlClient
    return yield* Effect.scoped(Effect.gen(function*() {
      const conn = yield* sql.reserve
      const key = ledger === LEDGER ? `tessera:migrate:${module}` : `tessera:migrate:${module}:${ledger}`
      yield* Effect.acquireRelease(
        conn.executeUnprepared("SELECT pg_advisory_lock(hashtext($1))", [key], undefined),
        () => Effect.ignore(conn.executeUnprepared("SELECT pg_advisory_unlock(hashtext($1))", [key], undefined))
      )
      return yield* apply
    }))
  }).pipe(Effect.withSpan("Migrations.run", { attributes: { "tessera.module": module } }))

/** The id of the newest migration recorded in the module's ledger (0 for none). */
export const applied = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly id: number | null }>`SELECT max(migration_id) AS id FROM ${sql(LEDGER)}`
  return rows[0]?.id ?? 0
})
