/**
 * Embedded PostgreSQL: PGlite (Postgres compiled to WASM) in a data directory, served on a Unix
 * socket inside that directory by pglite-socket so that @effect/sql-pg talks to it exactly as it
 * talks to a real server. One PGlite is one session: the admin client has a pool of one
 * connection and modules share it through `ModuleSql.embedded` (../../ARCHITECTURE.md, "Data").
 *
 * Timeouts: a statement waits for the session at most `TESSERA_DB_ACQUIRE_TIMEOUT` (`Gate.ts`),
 * but once it runs it runs to its end. PGlite executes a statement on Node's own thread, so the
 * event loop (timers included) waits with it, and it has no working `statement_timeout`; a
 * fiber interrupted mid-statement waits for the statement and its rollback. What bounds a slow
 * statement here is the acquire timeout of the requests queued behind it, and liveness
 * (`Health.ts`) when the session stays held.
 *
 * This file is the only place that constructs PGlite, so that a build which ships PGlite's
 * files differently (the single executable) changes one place: `pgliteFiles`.
 */
import { PGlite, type PGliteOptions } from "@electric-sql/pglite"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import * as Reactivity from "@effect/experimental/Reactivity"
import { Context, Data, Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Settings from "../Settings.ts"
import * as SingleExecutable from "../SingleExecutable.ts"
import * as Gate from "./Gate.ts"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{ readonly message: string }> {}

/**
 * PostgreSQL's settings for the embedded database, sized for a small shop in one process.
 * PGlite's WebAssembly memory only grows, so whatever PostgreSQL allocates once stays resident:
 * its default 128 MB of `shared_buffers` made up half of an idle process. PGlite reads its files
 * through the operating system, whose page cache keeps hot pages anyway, so 16 MB costs little;
 * `maintenance_work_mem` (64 MB by default, spent by CREATE INDEX) is bounded for the same reason.
 */
export const settings: ReadonlyArray<readonly [name: string, value: string]> = [
  ["shared_buffers", "16MB"],
  ["maintenance_work_mem", "16MB"]
]

/** What PGlite is started with, here and when the release's data directory template is made. */
export const options = {
  startParams: [...PGlite.defaultStartParams, ...settings.flatMap(([name, value]) => ["-c", `${name}=${value}`])]
}

/**
 * The release's new data directory, made by `npm run build` with `options` and found beside the
 * code as PGlite's own files are.
 */
export const TEMPLATE_DIR = "pgdata"

/**
 * Makes `pgDir` a copy of the release's template when it holds no database yet; from source there
 * is none and PGlite runs initdb itself. A first boot from the template skips initdb, which took
 * most of the first boot's time and, in a second PGlite instance that lingered until a garbage
 * collection an idle process never runs, about 400 MB of its memory. A plain copy rather than
 * PGlite's `loadDataDir` (a tarball unpacked in memory) leaves no garbage behind. The copy is made
 * beside `pgDir` and renamed onto it, so a crash mid-copy leaves no half a database.
 */
const copyTemplate = (pgDir: string) =>
  Effect.try({
    catch: (cause) => new EmbeddedPostgresError({ message: `cannot make a new embedded database in ${pgDir}: ${cause}` }),
    try: () => {
      // The single executable carries no template (it would be 39 MB more): it runs initdb.
      if (SingleExecutable.isSingleExecutable) return false
      const template = new URL(`./${TEMPLATE_DIR}`, import.meta.url)
      if (template.protocol !== "file:" || !fs.existsSync(template)) return false
      if (fs.existsSync(path.join(pgDir, "PG_VERSION")) || fs.readdirSync(pgDir).length > 0) return false
      const staging = `${pgDir}.new-${process.pid}`
      fs.rmSync(staging, { recursive: true, force: true })
      // A copy-on-write clone where the file system offers one (btrfs, XFS), else a plain copy.
      fs.cpSync(fileURLToPath(template), staging, { recursive: true, mode: fs.constants.COPYFILE_FICLONE })
      fs.chmodSync(staging, 0o700)
      fs.renameSync(staging, pgDir)
      return true
    }
  })

/** Unix socket paths are limited to about 107 bytes; past that the server listens on loopback. */
const SOCKET_PATH_LIMIT = 100

const socketAnswers = (socket: string) =>
  Effect.async<boolean>((resume) => {
    const probe = net.connect(socket)
    probe.once("connect", () => {
      probe.destroy()
      resume(Effect.succeed(true))
    })
    probe.once("error", () => resume(Effect.succeed(false)))
  })

/**
 * PGlite's WASM and data. PGlite reads them from beside its own module; the single executable
 * has nothing beside it and carries them inside itself, so there they are handed to PGlite.
 */
const pgliteFiles = async (): Promise<Pick<PGliteOptions, "pgliteWasmModule" | "initdbWasmModule" | "fsBundle">> => {
  if (!SingleExecutable.isSingleExecutable) return {}
  const [pglite, initdb, data] = await Promise.all([
    SingleExecutable.asset("pglite.wasm"),
    SingleExecutable.asset("initdb.wasm"),
    SingleExecutable.asset("pglite.data")
  ])
  const [pgliteWasmModule, initdbWasmModule] = await Promise.all([WebAssembly.compile(pglite), WebAssembly.compile(initdb)])
  return { pgliteWasmModule, initdbWasmModule, fsBundle: new Blob([data]) }
}

/**
 * The admin SQL client of the embedded database (superuser, pool of one), every statement
 * through `gate`, which the modules' clients share.
 */
export class EmbeddedPostgres extends Context.Tag("tessera/EmbeddedPostgres")<
  EmbeddedPostgres,
  SqlClient.SqlClient & { readonly gate: Gate.Gate }
>() {
  static readonly layer = Layer.scoped(
    EmbeddedPostgres,
    Effect.gen(function*() {
      const dataDir = path.resolve(yield* Settings.dataDir.config)
      const pgDir = path.join(dataDir, "pg")
      yield* Effect.sync(() => fs.mkdirSync(pgDir, { recursive: true, mode: 0o700 }))

      const socket = path.join(dataDir, ".s.PGSQL.5432")
      const onSocket = socket.length < SOCKET_PATH_LIMIT
      if (onSocket && fs.existsSync(socket)) {
        // A live socket means another process has this data directory open; a dead one is left
        // over from a crash.
        if (yield* socketAnswers(socket)) {
          return yield* new EmbeddedPostgresError({
            message: `the embedded database in ${dataDir} is in use by another process; give each process its own TESSERA_DATA_DIR or set DATABASE_URL`
          })
        }
        yield* Effect.sync(() => fs.rmSync(socket, { force: true }))
      }

      yield* Effect.logInfo("starting embedded PostgreSQL (PGlite)").pipe(Effect.annotateLogs("dataDir", pgDir))
      if (yield* copyTemplate(pgDir)) yield* Effect.logInfo("new data directory copied from the release's template")
      const db = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: async () => PGlite.create({ ...options, dataDir: pgDir, ...(await pgliteFiles()) }),
          catch: (cause) => new EmbeddedPostgresError({ message: `cannot open embedded PostgreSQL in ${pgDir}: ${cause}` })
        }),
        (db) => Effect.promise(() => db.close())
      )
      const server = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: async () => {
            const server = new PGLiteSocketServer(
              onSocket ? { db, path: socket, maxConnections: 4 } : { db, host: "127.0.0.1", port: 0, maxConnections: 4 }
            )
            await server.start()
            return server
          },
          catch: (cause) => new EmbeddedPostgresError({ message: `cannot serve embedded PostgreSQL: ${cause}` })
        }),
        (server) => Effect.promise(() => server.stop())
      )
      const connection = onSocket
        ? { host: dataDir, port: 5432 }
        : { host: "127.0.0.1", port: Number(server.getServerConn().split(":").pop()) }
      // The login user is ignored by PGlite (everyone is the superuser) but must be given.
      const pool = yield* PgClient.make({ ...connection, username: "postgres", database: "postgres", maxConnections: 1 })
      const { acquireTimeout } = yield* Gate.settings
      const gate = yield* Gate.make(pool, { label: "embedded", connections: 1, acquireTimeout, statementTimeout: Option.none() })
      const admin = yield* SqlClient.make({
        acquirer: gate.reserve,
        transactionAcquirer: gate.reserve,
        compiler: PgClient.makeCompiler(),
        spanAttributes: [["db.system.name", "postgresql"]]
      })
      return Object.assign(admin, { gate })
    })
  ).pipe(Layer.provide(Reactivity.layer))
}
