/**
 * The database holds the bound on a product's units by itself (migration 0002): a row past it is
 * refused whoever writes it, and rows an earlier restock took past it
 * are brought back under it, their reserved units kept, so their reservations can be released.
 */
import type { SqlError } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Database from "../../runtime/db/Database.ts"
import * as PgError from "../../runtime/db/PgError.ts"
import * as Services from "../../runtime/testing/Services.ts"
import { MAX_UNITS } from "./InventoryApi.ts"

const source = fileURLToPath(new URL("../../migrations/inventory", import.meta.url))
const LIMIT_MIGRATION = "0002_limit_stock_units.sql"

// One database suffices here (PostgreSQL if there is one): the suite in StockLimits.test.ts runs
// the migrated schema on both.
const { acquire, name } = (await Services.databases()).find((d) => typeof d.acquire !== "string")!
describe(`inventory's stock bound on ${name}`, () => {
  // The migrations as they were before the bound; the test adds the bound's file itself.
  const migrations = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-inventory-migrations-"))
  fs.mkdirSync(path.join(migrations, "inventory"))
  for (const file of fs.readdirSync(source).filter((f) => f < LIMIT_MIGRATION)) {
    fs.copyFileSync(path.join(source, file), path.join(migrations, "inventory", file))
  }
  let database: Services.TestDatabase
  let runtime: ManagedRuntime.ManagedRuntime<never, unknown>
  const config = () =>
    Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({
      TESSERA_MIGRATIONS_DIR: migrations,
      ...(database.database._tag === "Postgres"
        ? { DATABASE_URL: database.database.url }
        : { TESSERA_DATA_DIR: database.database.dataDir })
    }))))
  const withInventory = <A, E = SqlError.SqlError>(f: (sql: Database.ModuleDatabase["sql"]) => Effect.Effect<A, E>) =>
    runtime.runPromise(
      Effect.scoped(Effect.flatMap(Database.open("inventory"), (db) => f(db.sql))).pipe(Effect.provide(config())) as Effect.Effect<A, unknown>
    )

  beforeAll(async () => {
    database = await (acquire as () => Promise<Services.TestDatabase>)()
    runtime = Services.runtimeOn(database, config())
    await runtime.runtime()
  })
  afterAll(async () => {
    await runtime?.dispose()
    await database?.release()
    fs.rmSync(migrations, { recursive: true, force: true })
  })

  const [overflowed, full, partly] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]

  it("brings rows past the bound under it, keeping their reserved units, and refuses any row past it", async () => {
    await withInventory((sql) =>
      sql`INSERT INTO stock (product_id, available, reserved) VALUES
            (${overflowed}, ${MAX_UNITS}, ${MAX_UNITS}), (${full}, ${MAX_UNITS - 5}, 5), (${partly}, 7, 3)`
    )
    fs.copyFileSync(path.join(source, LIMIT_MIGRATION), path.join(migrations, "inventory", LIMIT_MIGRATION))

    const levels = await withInventory((sql) =>
      sql<{ id: string; available: number; reserved: number }>`
        SELECT product_id AS id, available, reserved FROM stock ORDER BY available`
    )
    expect(new Map(levels.map((row) => [row.id, [row.available, row.reserved]]))).toEqual(new Map([
      [overflowed, [0, MAX_UNITS]],
      [partly, [7, 3]],
      [full, [MAX_UNITS - 5, 5]]
    ]))

    const refused = await withInventory((sql) =>
      Effect.all([
        Effect.flip(sql`UPDATE stock SET available = available + 1 WHERE product_id = ${full}`),
        Effect.flip(sql`UPDATE stock SET reserved = reserved + 1 WHERE product_id = ${full}`),
        Effect.flip(sql`INSERT INTO stock (product_id, available, reserved) VALUES (${crypto.randomUUID()}, ${MAX_UNITS}, 1)`)
      ])
    )
    expect(refused.map((e) => [PgError.code(e), PgError.constraint(e)])).toEqual(
      Array.from({ length: 3 }, () => ["23514", "stock_units_limit"])
    )

    // What release does, on the repaired row: every reserved unit returns.
    const released = await withInventory((sql) =>
      sql<{ available: number; reserved: number }>`
        UPDATE stock SET available = available + ${MAX_UNITS}, reserved = reserved - ${MAX_UNITS}
        WHERE product_id = ${overflowed} RETURNING available, reserved`
    )
    expect(released).toEqual([{ available: MAX_UNITS, reserved: 0 }])
  })
})
