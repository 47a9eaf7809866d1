/**
 * Where each module's data lives, and its SQL client: migrated, bound to its schema and role.
 *
 * - `TESSERA_<MODULE>_DATABASE_URL`: this module's own database (database-per-service);
 * - else `DATABASE_URL`: one PostgreSQL for every module, each in its own schema;
 * - else the embedded database (`EmbeddedPostgres`) under `TESSERA_DATA_DIR`.
 *
 * The URL is the admin connection: it creates the module's schema and role. The module itself
 * then logs in as `tessera_<module>` with the same password, and applies its migrations.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import * as Reactivity from "@effect/experimental/Reactivity"
import { Config, Effect, Option, Predicate, Redacted, Schedule, type Stream } from "effect"
import { EmbeddedPostgres } from "./EmbeddedPostgres.ts"
import * as Settings from "../Settings.ts"
import * as AfterCommit from "./AfterCommit.ts"
import * as Gate from "./Gate.ts"
import * as Migrations from "./Migrations.ts"
import * as ModuleSql from "./ModuleSql.ts"
import * as PgError from "./PgError.ts"

export interface ModuleDatabase {
  readonly module: string
  readonly sql: SqlClient.SqlClient
  /** `embedded` or the server (host:port/database) the module uses. */
  readonly location: string
  /** The id of the newest migration file; the ledger must reach it for the module to be ready. */
  readonly latest: number
  /** What every statement of `sql` passes (the embedded database's is shared by its modules). */
  readonly gate: Gate.Gate
  /**
   * On PostgreSQL, the notifications of `channel` (`LISTEN`, on a connection of its own beside the
   * pool, opened at the first listen); `undefined` on the embedded database.
   */
  readonly listen: ((channel: string) => Stream.Stream<string, SqlError.SqlError>) | undefined
}

/** The admin URL for a module's data, if it is not on the embedded database. */
export const urlFor = (module: string) =>
  Config.map(
    Config.all([Settings.moduleDatabaseUrl(module).config, Settings.databaseUrl.config]),
    ([own, shared]) => Option.orElse(own, () => shared)
  )

const describe = (url: Redacted.Redacted) => {
  const parsed = new URL(Redacted.value(url))
  return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
}

const poolSize = Settings.dbPoolSize.config

/** PostgreSQL's refusal of a catalog row updated by another transaction meanwhile (SQLSTATE XX000). */
const concurrentlyUpdated = (error: unknown) =>
  Predicate.isTagged(error, "SqlError") &&
  PgError.code(error as SqlError.SqlError) === "XX000" &&
  String((error as SqlError.SqlError).cause).includes("tuple concurrently updated")

/**
 * The embedded database is one session: its modules migrate one at a time (on PostgreSQL an
 * advisory lock does this, across processes too).
 */
const embeddedMigrations = Effect.unsafeMakeSemaphore(1)

/**
 * Opens, bootstraps and migrates one module's database; the client lives as long as the scope.
 * Its transactions run what was registered with `AfterCommit.register` once they commit.
 * `runtime`: the runtime's own tables this module asks for (`Migrations.RuntimeSource`), each
 * migrated after the module's own migrations, into its own ledger.
 */
export const open = (module: string, options?: { readonly runtime?: ReadonlyArray<Migrations.RuntimeSource> }) =>
  Effect.gen(function*() {
    const sources = options?.runtime ?? []
    const url = yield* urlFor(module)
    const migrations = yield* Migrations.files(module)
    const latest = migrations.reduce((max, file) => Math.max(max, file.id), 0)

    if (Option.isNone(url)) {
      const admin = yield* EmbeddedPostgres
      const sql = AfterCommit.install(yield* ModuleSql.embedded(admin, module))
      const ran = yield* embeddedMigrations.withPermits(1)(
        Effect.gen(function*() {
          const found = yield* embeddedState(admin, module)
          if (found.marker !== ModuleSql.bootstrapMarker(module)) yield* admin.unsafe(ModuleSql.bootstrapEmbedded(module))
          // No ledger yet: the Migrator makes one, which readiness reads, even with no migration.
          if (found.applied !== undefined && found.applied >= latest) return []
          return yield* Migrations.run(module, migrations, { lock: false }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
        })
      )
      yield* logMigrations(module, ran)
      for (const source of sources) {
        const applied = yield* embeddedMigrations.withPermits(1)(
          Migrations.run(module, Migrations.filesOf(source), { lock: false, ledger: source.ledger }).pipe(
            Effect.provideService(SqlClient.SqlClient, sql)
          )
        )
        yield* logMigrations(`${module} (runtime ${source.name})`, applied)
      }
      return { module, sql, location: "embedded", latest, gate: admin.gate, listen: undefined } satisfies ModuleDatabase
    }

    yield* Effect.scoped(
      Effect.flatMap(
        PgClient.make({ url: url.value, maxConnections: 1, applicationName: `tessera/${module}/bootstrap` }),
        (admin) => admin.unsafe(ModuleSql.bootstrap(module, ModuleSql.passwordOf(url.value)))
      )
    ).pipe(
      // A role is the server's, not one database's: a bootstrap of the same module on another
      // database of the server at the same moment (its advisory lock holds within a database
      // only) rewrites the same catalog row, and one of the two fails with "tuple concurrently
      // updated". It makes no change that the other does not, so it is run again.
      Effect.retry({ while: concurrentlyUpdated, times: 5, schedule: Schedule.jittered(Schedule.exponential("50 millis")) })
    )
    // Migrations run on a pool of their own, closed after: no statement timeout cuts them short.
    const ran = yield* Effect.scoped(Effect.flatMap(
      ModuleSql.postgres({ module, adminUrl: url.value, maxConnections: 2 }),
      (sql) =>
        Effect.flatMap(
          Migrations.run(module, migrations, { lock: true }),
          (ran) =>
            Effect.as(
              Effect.forEach(sources, (source) =>
                Effect.flatMap(
                  Migrations.run(module, Migrations.filesOf(source), { lock: true, ledger: source.ledger }),
                  (applied) => logMigrations(`${module} (runtime ${source.name})`, applied)
                )),
              ran
            )
        ).pipe(Effect.provideService(SqlClient.SqlClient, sql))
    ))
    yield* logMigrations(module, ran)
    const connections = yield* poolSize
    const { acquireTimeout, statementTimeout } = yield* Gate.settings
    // One connection more than the gate lets through: @effect/sql-pg cancels an interrupted
    // statement with `pg_cancel_backend` over the same pool, which must not wait behind the
    // very connections it is cancelling.
    const pool = yield* ModuleSql.postgres({
      module,
      adminUrl: url.value,
      maxConnections: connections + 1,
      statementTimeout,
      connectTimeout: acquireTimeout
    })
    const gate = yield* Gate.make(pool, { label: module, connections, acquireTimeout, statementTimeout: Option.some(statementTimeout) })
    const sql = AfterCommit.install(yield* ModuleSql.guarded(gate, module))
    return { module, sql, location: describe(url.value), latest, gate, listen: pool.listen } satisfies ModuleDatabase
  }).pipe(Effect.provide(Reactivity.layer), Effect.annotateLogs("module", module))

/**
 * What a start finds of `module` in the embedded database: the marker its bootstrap left on its
 * schema (`ModuleSql.bootstrapMarker`), and the newest migration its ledger records (0 for none;
 * undefined when it has no ledger).
 * A later boot finds both current and goes on after these two reads, where it used to bootstrap
 * again (statements that rewrite the system catalogs) and run the Migrator only for it to find
 * nothing to do (about eight round trips: a transaction, a table lock, the ledger read twice),
 * each module in turn on PGlite's one session. Nothing else writes to the embedded database (one
 * process owns it), so what is read here still holds when the module starts using it.
 */
const embeddedState = (admin: SqlClient.SqlClient, module: string) =>
  Effect.gen(function*() {
    const [schema] = yield* admin<{ readonly marker: string | null; readonly ledger: boolean }>`
      SELECT obj_description(oid, 'pg_namespace') AS marker,
             to_regclass(${`${module}.${Migrations.LEDGER}`}) IS NOT NULL AS ledger
      FROM pg_namespace WHERE nspname = ${module}`
    if (schema === undefined || !schema.ledger) return { marker: schema?.marker ?? null, applied: undefined }
    const [ledger] = yield* admin<{ readonly id: number | null }>`SELECT max(migration_id) AS id FROM ${admin(module)}.${admin(Migrations.LEDGER)}`
    return { marker: schema.marker, applied: ledger?.id ?? 0 }
  })

const logMigrations = (module: string, ran: ReadonlyArray<readonly [number, string]>) =>
  ran.length === 0
    ? Effect.logDebug(`${module}: schema up to date`)
    : Effect.logInfo(`${module}: applied migrations ${ran.map(([id, name]) => `${id}_${name}`).join(", ")}`)
