/**
 * Interruption at any point never leaks a connection, on PostgreSQL and embedded: fibers
 * interrupted while they wait for a connection, mid-statement and mid-transaction, many times
 * over, leave a pool that still hands out every one of its connections at once. Waiting for a
 * connection and running a statement are timed, and a timeout is the module being unavailable
 * (an `RpcClientError` defect, which the gateway answers 503), never a hang.
 */
import { RpcClientError } from "@effect/rpc"
import type { SqlClient } from "@effect/sql"
import { Cause, ConfigProvider, Deferred, Duration, Effect, Exit, Fiber, Layer, ManagedRuntime, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Services from "../testing/Services.ts"
import * as Database from "./Database.ts"

const migrations = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-interruption-"))
fs.mkdirSync(path.join(migrations, "pool"), { recursive: true })
fs.writeFileSync(path.join(migrations, "pool", "0001_create_writes.sql"), `CREATE TABLE writes (key int NOT NULL, part int NOT NULL);`)
afterAll(() => fs.rmSync(migrations, { recursive: true, force: true }))

/** The pool size on PostgreSQL (the embedded database has one session). */
const POOL = 3
const ACQUIRE_TIMEOUT = "1 second"

/** Whether `exit` is the module-unavailable defect a timeout must give. */
const unavailable = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) && Option.exists(Cause.dieOption(exit.cause), (d) => d instanceof RpcClientError.RpcClientError)

/**
 * Every one of the pool's `size` connections at once: `size` transactions that each wait inside
 * until all are inside. Fails (rather than hangs) when the pool hands out fewer.
 */
const allConnections = (sql: SqlClient.SqlClient, size: number) =>
  Effect.gen(function*() {
    const inside = yield* Effect.makeLatch(false)
    let entered = 0
    yield* Effect.all(
      Array.from({ length: size }, () =>
        sql.withTransaction(Effect.gen(function*() {
          yield* sql`SELECT 1`
          if (++entered === size) yield* inside.open
          yield* inside.await
          yield* sql`SELECT 1`
        }))),
      { concurrency: "unbounded" }
    )
    return entered
  }).pipe(Effect.timeoutFail({ duration: "8 seconds", onTimeout: () => new Error(`the pool did not hand out ${size} connections at once`) }))

/** Holds every connection in a transaction until `release` completes. */
const holdAll = (sql: SqlClient.SqlClient, size: number, release: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const held = yield* Effect.makeLatch(false)
    let holding = 0
    const fibers = yield* Effect.forEach(
      Array.from({ length: size }),
      () =>
        Effect.fork(sql.withTransaction(Effect.gen(function*() {
          yield* sql`SELECT 1`
          if (++holding === size) yield* held.open
          yield* Deferred.await(release)
        }))),
      { concurrency: "unbounded" }
    )
    yield* held.await
    return fibers
  })

for (const { acquire, name } of await Services.databases()) {
  if (typeof acquire === "string") {
    describe.skip(`interruption on ${name}`, () => it(acquire, () => {}))
    continue
  }

  describe(`interruption on ${name}`, () => {
    let database: Services.TestDatabase
    let runtime: ManagedRuntime.ManagedRuntime<never, unknown>
    let size = 1
    const config = (extra: Record<string, string> = {}) =>
      Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({
        TESSERA_MIGRATIONS_DIR: migrations,
        TESSERA_DB_POOL_SIZE: String(POOL),
        TESSERA_DB_ACQUIRE_TIMEOUT: ACQUIRE_TIMEOUT,
        ...(database.database._tag === "Postgres"
          ? { DATABASE_URL: database.database.url }
          : { TESSERA_DATA_DIR: database.database.dataDir }),
        ...extra
      }))))
    /** Runs `f` with the module's database, opened with `extra` configuration. */
    const withPool = <A, E>(
      f: (db: Database.ModuleDatabase) => Effect.Effect<A, E>,
      extra: Record<string, string> = {}
    ) =>
      runtime.runPromise(
        Effect.scoped(Effect.flatMap(Database.open("pool"), f)).pipe(Effect.provide(config(extra))) as Effect.Effect<A, E>
      )

    beforeAll(async () => {
      database = await acquire()
      size = database.database._tag === "Postgres" ? POOL : 1
      runtime = Services.runtimeOn(database, config())
      await runtime.runtime()
    })
    afterAll(async () => {
      await runtime?.dispose()
      await database?.release()
    })

    it("gives back every connection after 200 waiters are interrupted while they wait for one", async () => {
      const entered = await withPool(({ sql }) =>
        Effect.gen(function*() {
          const release = yield* Deferred.make<void>()
          const holders = yield* holdAll(sql, size, release)
          // Waiting three ways: a statement, a transaction, a reserved connection.
          const waiters = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) =>
            Effect.fork(
              i % 3 === 0
                ? sql`SELECT 1`
                : i % 3 === 1
                ? sql.withTransaction(sql`SELECT 1`)
                : Effect.scoped(Effect.flatMap(sql.reserve, (c) => c.executeUnprepared("SELECT 1", [], undefined)))
            ))
          yield* Effect.sleep("50 millis")
          // Interrupted from elsewhere, as a client that leaves is; then the holders finish.
          const interrupting = yield* Effect.fork(Fiber.interruptAll(waiters))
          yield* Effect.sleep("50 millis")
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(interrupting)
          yield* Fiber.joinAll(holders)
          return yield* allConnections(sql, size)
        })
      )
      expect(entered).toBe(size)
    }, 30_000)

    it("gives back every connection after statements and transactions are interrupted at random points", async () => {
      const result = await withPool(({ sql }) =>
        Effect.gen(function*() {
          // Long enough to be caught mid-way; PGlite's pg_sleep would block the whole process.
          const work = database.database._tag === "Postgres"
            ? sql`SELECT pg_sleep(0.005)`
            : sql`SELECT count(*) FROM generate_series(1, 2000)`
          const attempt = (key: number) => {
            const effect = key % 2 === 0
              ? work
              : sql.withTransaction(Effect.gen(function*() {
                yield* sql`INSERT INTO writes VALUES (${key}, 1)`
                yield* work
                yield* sql`INSERT INTO writes VALUES (${key}, 2)`
              }))
            return Effect.flatMap(Effect.fork(effect), (fiber) =>
              Effect.zipRight(Effect.sleep(Duration.millis(Math.random() * 15)), Fiber.interrupt(fiber)))
          }
          yield* Effect.forEach(Array.from({ length: 240 }, (_, i) => i), attempt, { concurrency: 24, discard: true })
          const entered = yield* allConnections(sql, size)
          // A transaction interrupted mid-way wrote all of its rows or none.
          const parts = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM writes GROUP BY key`
          return { entered, partial: parts.filter((p) => p.n !== 2).length }
        })
      )
      expect(result).toEqual({ entered: size, partial: 0 })
    }, 30_000)

    it("answers a statement that waits too long for a connection with the module-unavailable defect, then serves", async () => {
      const result = await withPool(({ sql }) =>
        Effect.gen(function*() {
          const release = yield* Deferred.make<void>()
          const holders = yield* holdAll(sql, size, release)
          const started = Date.now()
          const waited = yield* Effect.exit(sql`SELECT 1`)
          const transaction = yield* Effect.exit(sql.withTransaction(sql`SELECT 1`))
          const elapsed = Date.now() - started
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.joinAll(holders)
          return { waited: unavailable(waited), transaction: unavailable(transaction), elapsed, entered: yield* allConnections(sql, size) }
        })
      )
      expect(result).toMatchObject({ waited: true, transaction: true, entered: size })
      expect(result.elapsed).toBeGreaterThanOrEqual(1_900)
      expect(result.elapsed).toBeLessThan(6_000)
    }, 30_000)

    it("reports the pool stalled while every connection stays held, and not once one is given back", async () => {
      const result = await withPool(({ gate, sql }) =>
        Effect.gen(function*() {
          const idle = yield* gate.stalledFor
          const release = yield* Deferred.make<void>()
          const holders = yield* holdAll(sql, size, release)
          yield* Effect.sleep("400 millis")
          const held = yield* gate.stalledFor
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.joinAll(holders)
          return { idle: Duration.toMillis(idle), held: Duration.toMillis(held), after: Duration.toMillis(yield* gate.stalledFor) }
        })
      )
      expect(result.idle).toBe(0)
      expect(result.held).toBeGreaterThanOrEqual(350)
      expect(result.after).toBe(0)
    }, 30_000)

    if (name === "PostgreSQL") {
      it("stops a statement that runs over its timeout at the server, answers it unavailable, then serves", async () => {
        const result = await withPool(({ sql }) =>
          Effect.gen(function*() {
            const started = Date.now()
            const slow = yield* Effect.exit(sql`SELECT pg_sleep(5)`)
            const inTransaction = yield* Effect.exit(sql.withTransaction(sql`SELECT pg_sleep(5)`))
            const elapsed = Date.now() - started
            const running = yield* sql<{ n: number }>`
              SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%' AND state = 'active'`
            return { slow: unavailable(slow), inTransaction: unavailable(inTransaction), elapsed, running: running[0]!.n, entered: yield* allConnections(sql, size) }
          }), { TESSERA_DB_STATEMENT_TIMEOUT: "300 millis" })
        expect(result).toMatchObject({ slow: true, inTransaction: true, running: 0, entered: size })
        expect(result.elapsed).toBeLessThan(4_000)
      }, 30_000)
    }
  })
}
