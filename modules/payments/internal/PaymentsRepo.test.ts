/**
 * PaymentsRepo over payments' migrated schema: a payment forgotten because its charge never
 * reached the provider is recorded again, with its outcome, when a concurrent call's charge under
 * the same key did reach it (the answer is never lost); a resolved payment keeps its outcome.
 */
import { SqlClient } from "@effect/sql"
import { ConfigProvider, Effect, Layer, ManagedRuntime, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Database from "../../../runtime/db/Database.ts"
import * as Services from "../../../runtime/testing/Services.ts"
import { PaymentId } from "../PaymentsApi.ts"
import { PaymentsRepo } from "./PaymentsRepo.ts"

// One database suffices (PostgreSQL if there is one): Payments.test.ts runs the module on both.
const { acquire, name } = (await Services.databases()).find((d) => typeof d.acquire !== "string")!
describe(`payments' repository on ${name}`, () => {
  let database: Services.TestDatabase
  let runtime: ManagedRuntime.ManagedRuntime<never, unknown>
  const config = () =>
    Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(
      database.database._tag === "Postgres" ? { DATABASE_URL: database.database.url } : { TESSERA_DATA_DIR: database.database.dataDir }
    ))))
  const withRepo = <A, E>(f: (repo: PaymentsRepo) => Effect.Effect<A, E>) =>
    runtime.runPromise(
      Effect.scoped(Effect.flatMap(Database.open("payments"), (db) =>
        Effect.flatMap(PaymentsRepo, f).pipe(
          Effect.provide(PaymentsRepo.Default),
          Effect.provideService(SqlClient.SqlClient, db.sql)
        ))).pipe(Effect.provide(config())) as Effect.Effect<A, unknown>
    )

  beforeAll(async () => {
    database = await (acquire as () => Promise<Services.TestDatabase>)()
    runtime = Services.runtimeOn(database, config())
    await runtime.runtime()
  })
  afterAll(async () => {
    await runtime?.dispose()
    await database?.release()
  })

  const pending = (paymentId: PaymentId) => ({
    paymentId,
    orderId: crypto.randomUUID(),
    customerId: crypto.randomUUID(),
    amountCents: 700,
    currency: "EUR",
    providerKey: `tessera-charge-${paymentId}`
  })

  it("records a charge again, with its outcome, when its pending payment was forgotten meanwhile", async () => {
    const paymentId = PaymentId.make(`repo-${crypto.randomUUID()}`)
    const row = await withRepo((repo) => repo.insertPending(pending(paymentId)))
    expect(row.status).toBe("pending")
    await withRepo((repo) => repo.forgetPending(paymentId))
    expect(Option.isNone(await withRepo((repo) => repo.find(paymentId)))).toBe(true)
    const resolved = await withRepo((repo) => repo.resolve(row, "charged", "ch_late"))
    expect(resolved).toMatchObject({ paymentId, status: "charged", providerChargeId: "ch_late", amountCents: 700, orderId: row.orderId })
    // Resolved: another outcome does not overwrite it, and it is no longer pending to forget.
    expect(await withRepo((repo) => repo.resolve(row, "declined", "ch_other"))).toMatchObject({ status: "charged", providerChargeId: "ch_late" })
    await withRepo((repo) => repo.forgetPending(paymentId))
    expect(Option.getOrThrow(await withRepo((repo) => repo.find(paymentId))).status).toBe("charged")
  })
})
