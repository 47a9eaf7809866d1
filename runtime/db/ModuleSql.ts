/**
 * The SQL client a module gets: bound to its own schema and role.
 *
 * - Real PostgreSQL: a pool that logs in as `tessera_<module>`, a role with rights on the
 *   module's schema only and that schema as its search_path (see `bootstrap`).
 * - Embedded PGlite: one shared session, whose login role is ignored. Every statement the module
 *   runs is wrapped in a transaction that begins with `SET LOCAL ROLE tessera_<module>; SET LOCAL
 *   search_path TO <module>`, so the same grants hold it to its schema.
 *
 * Either way every statement passes `Gate.ts` (timeouts; interruption never leaks a connection).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqlClient, type SqlConnection, type SqlError } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Exit, Redacted, Stream } from "effect"
import { createHash } from "node:crypto"
import type * as Gate from "./Gate.ts"

/** The database role a module logs in as. */
export const roleOf = (module: string) => `tessera_${module}`

const identifier = /^[a-z][a-z0-9_]*$/

const quoteLiteral = (text: string) => `'${text.replace(/'/g, "''")}'`

/**
 * Creates the module's schema and role (idempotent), run as the admin user. The role may use
 * and create objects in its schema and nothing else; objects the admin creates there are granted
 * to it too. Serialised by an advisory lock so that processes starting together do not race.
 */
export const bootstrap = (module: string, password: Redacted.Redacted | undefined) => `
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('tessera:bootstrap'));
${grants(module, password)}
COMMIT;`

/**
 * `bootstrap` for the embedded database, which then marks the schema with `bootstrapMarker` in
 * the same transaction. (Only there: on PostgreSQL the schema may belong to another role than
 * the admin URL's, and commenting on it needs its owner.)
 */
export const bootstrapEmbedded = (module: string) => `
BEGIN;
${grants(module, undefined)}
COMMENT ON SCHEMA ${module} IS ${quoteLiteral(bootstrapMarker(module))};
COMMIT;`

const grants = (module: string, password: Redacted.Redacted | undefined) => {
  if (!identifier.test(module)) throw new Error(`module name ${module} is not a valid SQL identifier`)
  const role = roleOf(module)
  const admin = "CURRENT_USER"
  return `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN
    CREATE ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; -- created by another database's bootstrap
END $$;
${password === undefined ? "" : `ALTER ROLE ${role} PASSWORD ${quoteLiteral(Redacted.value(password))};`}
CREATE SCHEMA IF NOT EXISTS ${module};
REVOKE ALL ON SCHEMA ${module} FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA ${module} TO ${role};
ALTER DEFAULT PRIVILEGES FOR ROLE ${admin} IN SCHEMA ${module}
  GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES TO ${role};
ALTER DEFAULT PRIVILEGES FOR ROLE ${admin} IN SCHEMA ${module} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO ${role};
ALTER ROLE ${role} SET search_path = ${module};`
}

/**
 * The comment `bootstrapEmbedded` leaves on the module's schema: a digest of what it grants, so
 * that a start which finds this build's marker there knows the role, the schema and their grants
 * are as this build makes them, and skips the bootstrap, whose statements rewrite the system
 * catalogs. A build that grants differently finds another marker and bootstraps again.
 */
export const bootstrapMarker = (module: string) =>
  `tessera bootstrap ${createHash("sha256").update(grants(module, undefined)).digest("hex").slice(0, 16)}`

/** The admin URL with the module's role as its user (the password, if any, stays). */
export const moduleUrl = (adminUrl: Redacted.Redacted, module: string): Redacted.Redacted => {
  const url = new URL(Redacted.value(adminUrl))
  url.username = roleOf(module)
  return Redacted.make(url.toString())
}

/** The password of a connection URL, if it has one. */
export const passwordOf = (url: Redacted.Redacted): Redacted.Redacted | undefined => {
  const password = new URL(Redacted.value(url)).password
  return password === "" ? undefined : Redacted.make(decodeURIComponent(password))
}

/**
 * A pool on real PostgreSQL that logs in as the module's role; with `statementTimeout`, every
 * connection has it as its `statement_timeout`, so the server itself stops a statement that
 * runs over (and the statement a client stopped waiting for does not run on).
 */
export const postgres = (options: {
  readonly module: string
  readonly adminUrl: Redacted.Redacted
  readonly maxConnections: number
  readonly statementTimeout?: Duration.Duration | undefined
  readonly connectTimeout?: Duration.Duration | undefined
}) => {
  const url = new URL(Redacted.value(moduleUrl(options.adminUrl, options.module)))
  if (options.statementTimeout !== undefined) {
    url.searchParams.set("statement_timeout", String(Math.max(1, Math.round(Duration.toMillis(options.statementTimeout)))))
  }
  return PgClient.make({
    url: Redacted.make(url.toString()),
    maxConnections: options.maxConnections,
    connectTimeout: options.connectTimeout,
    applicationName: `tessera/${options.module}`
  })
}

/**
 * A module's client over a PostgreSQL pool, every statement and transaction through `gate`
 * (`Gate.ts`): interruption never leaks a connection, waiting and running are timed.
 */
export const guarded = (gate: Gate.Gate, module: string) =>
  SqlClient.make({
    acquirer: gate.reserve,
    transactionAcquirer: gate.reserve,
    compiler: PgClient.makeCompiler(),
    spanAttributes: [["db.system.name", "postgresql"], ["tessera.module", module]]
  }).pipe(Effect.provide(Reactivity.layer))

/**
 * A module's client over the embedded database's admin client. Statements outside a transaction
 * run in one of their own; transactions begin with the module's role and search_path (savepoints
 * inherit them).
 */
export const embedded = (base: SqlClient.SqlClient, module: string) =>
  Effect.gen(function*() {
    if (!identifier.test(module)) return yield* Effect.dieMessage(`module name ${module} is not a valid SQL identifier`)
    const begin = `BEGIN; SET LOCAL ROLE ${roleOf(module)}; SET LOCAL search_path TO ${module}`
    const exec = (conn: SqlConnection.Connection, statement: string) => conn.executeUnprepared(statement, [], undefined)
    const open = (conn: SqlConnection.Connection) =>
      Effect.tapError(exec(conn, begin), () => Effect.ignore(exec(conn, "ROLLBACK")))
    const close = (conn: SqlConnection.Connection, exit: Exit.Exit<unknown, unknown>) =>
      Exit.isSuccess(exit) ? exec(conn, "COMMIT") : Effect.ignore(exec(conn, "ROLLBACK"))
    const inTransaction = <A>(conn: SqlConnection.Connection, effect: Effect.Effect<A, SqlError.SqlError>) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(open(conn), Effect.exit(restore(effect))).pipe(
          Effect.flatMap((exit) => Effect.zipRight(close(conn, exit), exit))
        )
      )
    const wrap = (conn: SqlConnection.Connection): SqlConnection.Connection => ({
      execute: (sql, params, transform) => inTransaction(conn, conn.execute(sql, params, transform)),
      executeRaw: (sql, params) => inTransaction(conn, conn.executeRaw(sql, params)),
      executeValues: (sql, params) => inTransaction(conn, conn.executeValues(sql, params)),
      executeUnprepared: (sql, params, transform) => inTransaction(conn, conn.executeUnprepared(sql, params, transform)),
      executeStream: (sql, params, transform) =>
        Stream.unwrapScoped(
          Effect.acquireRelease(open(conn), (_, exit) => Effect.orDie(close(conn, exit))).pipe(
            Effect.as(conn.executeStream(sql, params, transform))
          )
        )
    })
    const acquirer = Effect.map(base.reserve, wrap)
    const client = yield* SqlClient.make({
      acquirer,
      // withTransaction does not roll back a BEGIN that failed half-way; do it here.
      transactionAcquirer: Effect.tap(base.reserve, (conn) =>
        Effect.addFinalizer((exit) => Exit.isFailure(exit) ? Effect.ignore(exec(conn, "ROLLBACK")) : Effect.void)),
      beginTransaction: begin,
      compiler: PgClient.makeCompiler(),
      spanAttributes: [["db.system.name", "postgresql"], ["tessera.module", module]]
    })
    // `reserve` hands out the session itself, each statement taking its turn as any other
    // (and wrapped as any other). PGlite has one session, so a reserved connection is that
    // session whoever holds it; holding the pool's only connection for as long as a caller keeps
    // it reserved would stop every module of the process. The cluster's shard storage keeps one
    // reserved for as long as it runs, for session-level advisory locks: those are the session's,
    // and a COMMIT does not release them.
    const perStatement = <A, E>(run: (conn: SqlConnection.Connection) => Effect.Effect<A, E>) =>
      Effect.scoped(Effect.flatMap(acquirer, run))
    const session: SqlConnection.Connection = {
      execute: (sql, params, transform) => perStatement((conn) => conn.execute(sql, params, transform)),
      executeRaw: (sql, params) => perStatement((conn) => conn.executeRaw(sql, params)),
      executeValues: (sql, params) => perStatement((conn) => conn.executeValues(sql, params)),
      executeUnprepared: (sql, params, transform) => perStatement((conn) => conn.executeUnprepared(sql, params, transform)),
      executeStream: (sql, params, transform) =>
        Stream.unwrapScoped(Effect.map(acquirer, (conn) => conn.executeStream(sql, params, transform)))
    }
    return Object.assign(client, { reserve: Effect.succeed(session) }) as SqlClient.SqlClient
  }).pipe(Effect.provide(Reactivity.layer))
