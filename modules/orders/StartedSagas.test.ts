/**
 * The sweep that starts the saga of an order committed with none, and of a cancel asked for with
 * none (internal/StartedSagas.ts), on PostgreSQL, the modules orders calls faked: orders and
 * cancel requests are committed behind the module's back, as a process that died between the
 * commit and the saga's start leaves them.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, ManagedRuntime, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Caller from "../../runtime/security/Caller.ts"
import * as Services from "../../runtime/testing/Services.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { type OrderId, OrdersClient } from "./OrdersApi.ts"
import { OrdersModule } from "./OrdersModule.ts"
import * as Fakes from "./Fakes.ts"

const server = await Services.findPostgres()
const fakes = Fakes.make()
const address = { name: "Ada Lovelace", line1: "1 Analytical St", city: "London", postalCode: "N1 9GU", country: "GB" }

/** Runs `f` with a client of the database at `url`, as its admin. */
const withSql = <A>(url: string, f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(PgClient.make({ url: Redacted.make(url), maxConnections: 1 }), f)).pipe(Effect.provide(Reactivity.layer)))

/** Commits PENDING orders placed `ageSeconds` ago, with no saga, as `place` does before it starts one. */
const commitOrders = (url: string, orders: ReadonlyArray<{ id: string; productId: string; ageSeconds: number }>) =>
  withSql(url, (sql) =>
    Effect.forEach(orders, (order) =>
      sql`INSERT INTO orders.orders (id, customer_id, idempotency_key, request_hash, status, items, total_cents, currency,
                                     shipping_address, payment_token, created_at)
          VALUES (${order.id}, 'c-sweep', ${order.id}, 'x', 'PENDING',
                  ${JSON.stringify([{ productId: order.productId, quantity: 1, unitPriceCents: 250 }])}::jsonb, 250, 'EUR',
                  ${JSON.stringify(address)}::jsonb, 'tok_ok', now() - make_interval(secs => ${order.ageSeconds}))`, { discard: true }))

describe.skipIf(!server.ok)("orders' sweep of pending orders with no saga, on PostgreSQL", () => {
  let db: { readonly url: string; readonly drop: () => Promise<void> } | undefined
  let runtime: ManagedRuntime.ManagedRuntime<any, unknown> | undefined

  beforeAll(async () => {
    db = await Services.createDatabase((server as { value: string }).value)
    runtime = ManagedRuntime.make(
      TestHost.layer([OrdersModule], { _tag: "Postgres", url: db.url }, fakes.stubs, { TESSERA_ORDERS_RESUME_AFTER: "1 second" })
    )
    await runtime.runtime()
  }, 60_000)
  afterAll(async () => {
    await runtime?.dispose()
    await db?.drop()
  })

  it("starts the cancel of a confirmed order whose cancel was asked for but never started: refunded, stock back, CANCELLED_BY_CUSTOMER", async () => {
    const lamp = fakes.product(5)
    const buyer = new Caller.Caller({ kind: "user", id: `c-${crypto.randomUUID()}`, role: "customer" })
    const orders = <A, E>(f: (c: OrdersClient["Type"]) => Effect.Effect<A, E>) =>
      runtime!.runPromise(Caller.withCaller(buyer)(Effect.flatMap(OrdersClient, f)))
    const placed = await orders((c) =>
      c.place({ items: [{ productId: lamp as never, quantity: 2 }], shippingAddress: address, paymentToken: "tok_ok", idempotencyKey: crypto.randomUUID() })
    )
    const until = async (done: (status: string) => boolean) => {
      let order = await orders((c) => c.get({ id: placed.id }))
      for (let i = 0; i < 150 && !done(order.status); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        order = await orders((c) => c.get({ id: placed.id }))
      }
      return order
    }
    expect((await until((s) => s === "CONFIRMED")).status).toBe("CONFIRMED")
    // The cancel asked for a minute ago, its saga never started (as `cancel` leaves it when its process dies right after).
    await withSql(db!.url, (sql) =>
      sql`UPDATE orders.orders SET cancel_requested = true, updated_at = now() - interval '60 seconds' WHERE id = ${placed.id}`)
    expect(await until((s) => s === "CANCELLED")).toMatchObject({ status: "CANCELLED", failureReason: "CANCELLED_BY_CUSTOMER" })
    expect(fakes.levelsOf(lamp)).toEqual({ available: 5, reserved: 0 })
    expect(fakes.payments.get(`order-${placed.id}`)?.status).toBe("refunded")
  }, 60_000)

  it("starts the saga of an order behind more than a batch of older orders still PENDING", async () => {
    // 101 older orders, all PENDING with no saga when the first sweep looks (later their sagas
    // die on a product the fake inventory does not know, and end them ORDER_FAILED): more than
    // one batch of the sweep, older than the one it must reach.
    const stuck = Array.from({ length: 101 }, () => ({ id: crypto.randomUUID(), productId: crypto.randomUUID(), ageSeconds: 3600 }))
    const lamp = fakes.product(5)
    const orphan = { id: crypto.randomUUID(), productId: lamp, ageSeconds: 60 }
    await commitOrders(db!.url, [...stuck, orphan])
    const admin = new Caller.Caller({ kind: "user", id: "admin-1", role: "admin" })
    let status = "PENDING"
    for (let i = 0; i < 150 && status === "PENDING"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      status = (await runtime!.runPromise(Caller.withCaller(admin)(Effect.flatMap(OrdersClient, (c) => c.get({ id: orphan.id as OrderId }))))).status
    }
    expect(status).toBe("CONFIRMED")
    expect(fakes.levelsOf(lamp)).toEqual({ available: 4, reserved: 0 })
  }, 60_000)
})
