/**
 * Modules check their callers themselves, not only the gateway: every RPC of this build that
 * changes state, called over the wire by a peer that holds the service credential (as another
 * process's module calls it), on behalf of no one, of a customer (user or API key), or of a module
 * it does not name, is refused with a typed `Unauthenticated` or `Forbidden`, and the database
 * is as it was. Each call's payload is one that would change something were it allowed (the
 * admin's or the named module's same call does, which the last test checks on one of them).
 *
 * Every rpc of every module in main.ts is classified below, by hand: `guarded` (changes state:
 * who may call it, and a payload), `owned` (changes state on a customer's own account: its owner
 * may, others are answered as if it did not exist, no one is Unauthenticated) or `unguarded`
 * (reads, or public by design: why). An rpc in none fails the first test, naming it: a new module
 * joins the sweep by adding its rows.
 */
import { PgClient } from "@effect/sql-pg"
import * as Reactivity from "@effect/experimental/Reactivity"
import type { Rpc, RpcGroup } from "@effect/rpc"
import { Cause, Effect, Exit, Redacted, Schedule, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "./main.ts"
import * as Caller from "./runtime/security/Caller.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as TestServer from "./runtime/testing/TestServer.ts"
import * as RemoteClient from "./runtime/transport/RemoteClient.ts"

const SECRET = "an-authorization-sweep-secret-long-enough"

/** Calls `rpc` of `module` with `payload` over the wire (on behalf of whoever the fiber carries). */
type Call = (module: string, rpc: string, payload?: unknown) => Effect.Effect<any, unknown>

interface Guarded {
  /** Who may: admins, and the modules named (on their own account). */
  readonly allows: ReadonlyArray<string>
  /**
   * A payload that changes state when an allowed caller sends it; `prepare` may first set up,
   * as `admin`, what it needs (a product to restock, a reservation to release).
   */
  readonly payload: (call: Call) => Effect.Effect<unknown, unknown>
}

/**
 * An rpc that changes state on its caller's own account (an order): its owner, a customer, may;
 * `others` is what any other caller gets (another customer or API key, a module): the error that
 * says there is nothing of theirs there (OrderNotFound), or `null` when every customer acts on its
 * own account (a new order: other customers may too, on theirs; a module is Forbidden, no customer).
 */
interface Owned {
  readonly others: string | null
  /** A payload that changes state when the owner sends it, prepared on the owner's behalf (`admin` for the rest). */
  readonly payload: (call: Call, admin: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>) => Effect.Effect<unknown, unknown>
}

const unique = () => crypto.randomUUID().slice(0, 8)

/** A product with `units` in stock, made by the admin. */
const stockedProduct = (call: Call, units: number) =>
  Effect.gen(function*() {
    const product = yield* call("catalog", "create", { sku: `AZ-${unique()}`, name: "Sweep", priceCents: 100, currency: "EUR" })
    yield* call("inventory", "restock", { productId: product.id, quantity: units })
    return product.id as string
  })

/** A held reservation of one unit. */
const heldReservation = (call: Call) =>
  Effect.gen(function*() {
    const productId = yield* stockedProduct(call, 3)
    const reservationId = `az-${unique()}`
    yield* call("inventory", "reserve", { reservationId, lines: [{ productId, quantity: 1 }] })
    return { reservationId }
  })

/** A shipment request for a new order. */
const newShipment = () => ({
  orderId: crypto.randomUUID(),
  customerId: crypto.randomUUID(),
  address: { name: "Ada Sweep", line1: "1 Main St", city: "Berlin", postalCode: "10115", country: "DE" }
})

/** A charge of a new order, with the provider simulator's token that succeeds. */
const newCharge = () => ({
  paymentId: `az-${unique()}`,
  orderId: crypto.randomUUID(),
  customerId: crypto.randomUUID(),
  amountCents: 100,
  currency: "EUR",
  token: "tok_ok"
})

const guarded: Record<string, Record<string, Guarded>> = {
  catalog: {
    create: {
      allows: [],
      payload: () => Effect.succeed({ sku: `AZ-${unique()}`, name: "Sweep", priceCents: 100, currency: "EUR" })
    }
  },
  inventory: {
    restock: { allows: ["orders"], payload: (call) => Effect.map(stockedProduct(call, 1), (productId) => ({ productId, quantity: 5 })) },
    reserve: {
      allows: ["orders"],
      payload: (call) =>
        Effect.map(stockedProduct(call, 3), (productId) => ({ reservationId: `az-${unique()}`, lines: [{ productId, quantity: 1 }] }))
    },
    release: { allows: ["orders"], payload: heldReservation },
    commit: { allows: ["orders"], payload: heldReservation }
  },
  identity: {
    createApiKey: { allows: [], payload: () => Effect.succeed({ name: `sweep ${unique()}`, role: "admin" }) },
    revokeApiKey: {
      allows: [],
      payload: (call) => Effect.map(call("identity", "createApiKey", { name: `sweep ${unique()}`, role: "customer" }), (key) => ({ id: key.id }))
    },
    rotateSigningKey: { allows: [], payload: () => Effect.succeed(undefined) }
  },
  payments: {
    charge: { allows: ["orders"], payload: () => Effect.succeed(newCharge()) },
    refund: {
      allows: ["orders"],
      payload: (call) => Effect.map(call("payments", "charge", newCharge()), (payment) => ({ paymentId: payment.paymentId }))
    }
  },
  shipping: {
    create: { allows: ["orders"], payload: () => Effect.succeed(newShipment()) },
    cancel: {
      allows: ["orders"],
      payload: (call) => Effect.map(call("shipping", "create", newShipment()), (shipment) => ({ orderId: shipment.orderId }))
    },
    release: {
      allows: ["orders"],
      payload: (call) => Effect.map(call("shipping", "create", newShipment()), (shipment) => ({ orderId: shipment.orderId }))
    },
    markShipped: {
      allows: [],
      // Released (its order confirmed): only a released shipment ships.
      payload: (call) =>
        Effect.gen(function*() {
          const shipment = yield* call("shipping", "create", newShipment())
          yield* call("shipping", "release", { orderId: shipment.orderId })
          return { orderId: shipment.orderId as string }
        })
    }
  }
}

/** An order of one unit of a product the admin stocks, paid with the simulator's token that succeeds. */
const newOrder = (call: Call, admin: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>) =>
  Effect.map(admin(stockedProduct(call, 3)), (productId) => ({
    items: [{ productId, quantity: 1 }],
    shippingAddress: { name: "Ada Sweep", line1: "1 Main St", city: "Berlin", postalCode: "10115", country: "DE" },
    paymentToken: "tok_ok",
    idempotencyKey: `az-${unique()}`
  }))

/** A confirmed order of the caller's (its saga done). */
const confirmedOrder = (call: Call, admin: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const placed = yield* Effect.flatMap(newOrder(call, admin), (order) => call("orders", "place", order))
    const order = yield* call("orders", "get", { id: placed.id }).pipe(
      Effect.filterOrFail((o) => o.status !== "PENDING"),
      Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300 })
    )
    if (order.status !== "CONFIRMED") return yield* Effect.die(new Error(`order ${order.id} ended ${order.status}`))
    return { id: order.id as string }
  })

const owned: Record<string, Record<string, Owned>> = {
  orders: {
    place: { others: null, payload: newOrder },
    cancel: { others: "OrderNotFound", payload: confirmedOrder }
  }
}

const unguarded: Record<string, Record<string, string>> = {
  catalog: { get: "reads", list: "reads" },
  inventory: { get: "reads" },
  identity: {
    register: "public by design: anyone may register as a customer (POST /v1/auth/register)",
    login: "public by design: exchanges a password for a token (POST /v1/auth/login)",
    me: "reads the caller itself",
    getUser: "reads; the handler answers only the user or an admin",
    listApiKeys: "reads; admin checked in the handler",
    authenticateApiKey: "reads: checks a key for the gateway, for requests on no one's behalf",
    jwks: "reads public keys"
  },
  shipping: { byOrder: "reads; the handler answers only an admin, the orders module or the shipment's customer" },
  payments: { byOrder: "reads; the handler answers only an admin, the orders module or the payment's customer" },
  orders: {
    get: "reads; the owner or an admin",
    list: "reads the caller's own orders (an admin's: all)",
    payment: "reads; the owner or an admin",
    shipment: "reads; the owner or an admin",
    listSagas: "reads; admin checked in the handler (Orders.test.ts)"
  },
  notifications: {
    list: "reads the caller's own notifications only; no one is Unauthenticated (Caller.requireCaller, Notifications.test.ts)"
  }
}

/** Reads of the caller's own account (the rpc answers the caller's own rows): each refuses no one, Unauthenticated. */
const ownReads: ReadonlyArray<readonly [module: string, rpc: string, payload: unknown]> = [
  ["orders", "list", {}],
  ["notifications", "list", {}]
]

const rpcsOf = (module: (typeof modules)[number]) =>
  [...(module.client.group as RpcGroup.RpcGroup<Rpc.Any>).requests.keys()]

const customer = new Caller.Caller({ kind: "user", id: "00000000-0000-4000-8000-00000000c057", role: "customer" })
const customerKey = new Caller.Caller({ kind: "apiKey", id: "00000000-0000-4000-8000-0000000000a9", role: "customer" })
const admin = new Caller.Caller({ kind: "user", id: "00000000-0000-4000-8000-0000000000ad", role: "admin" })
/** The customer whose orders the owned rpcs act on (`customer` is another one). */
const owner = new Caller.Caller({ kind: "user", id: "00000000-0000-4000-8000-0000000000b0", role: "customer" })

/** The callers refused for an rpc that `allows` these modules (and admins), and the error each gets. */
const refusedCallers = (allows: ReadonlyArray<string>) => [
  { who: "no one", run: Caller.anonymous, error: "Unauthenticated" },
  { who: "a customer", run: Caller.withCaller(customer), error: "Forbidden" },
  { who: "a customer's API key", run: Caller.withCaller(customerKey), error: "Forbidden" },
  { who: "a module it does not name", run: Caller.asService("stranger"), error: "Forbidden" },
  ...(allows.includes("orders") ? [] : [{ who: "the orders module", run: Caller.asService("orders"), error: "Forbidden" }])
] as const

/** The callers refused for an rpc on its owner's account, and the error each gets. */
const refusedOwnedCallers = (others: string | null) => [
  { who: "no one", run: Caller.anonymous, error: "Unauthenticated" },
  ...(others === null ? [] : [
    { who: "another customer", run: Caller.withCaller(customer), error: others },
    { who: "another customer's API key", run: Caller.withCaller(customerKey), error: others }
  ]),
  { who: "a module", run: Caller.asService("stranger"), error: others ?? "Forbidden" },
  { who: "the orders module", run: Caller.asService("orders"), error: others ?? "Forbidden" }
]

const postgres = await Services.findPostgres()
const skipped = postgres.ok ? undefined : Services.unavailable("PostgreSQL", postgres.reason)

describe.skipIf(skipped !== undefined)("authorization inside modules, over the wire", () => {
  let database: Awaited<ReturnType<typeof Services.createDatabase>>
  let server: TestServer.TestServer
  let scope: Scope.CloseableScope
  const clients = new Map<string, Record<string, (payload?: unknown) => Effect.Effect<unknown, unknown>>>()

  const call: Call = (module, rpc, payload) => {
    const client = clients.get(module)?.[rpc]
    return client === undefined ? Effect.die(new Error(`no client for ${module}.${rpc}`)) : client(payload) as Effect.Effect<any, unknown>
  }
  const asAdmin = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Caller.withCaller(admin)(effect))
  const asOwner = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Caller.withCaller(owner)(effect))

  /** `rpc` called with `payload` on behalf of `caller` fails with `caller.error` (a typed failure, not a defect). */
  const expectRefused = async (module: string, rpc: string, payload: unknown, caller: { who: string; run: <A, E>(e: Effect.Effect<A, E>) => Effect.Effect<A, E>; error: string }) => {
    const exit = await Effect.runPromiseExit(caller.run(call(module, rpc, payload)))
    const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
    const tag = failure?._tag === "Some" ? (failure.value as { _tag?: string })._tag : Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "success"
    expect(tag, `${module}.${rpc} on behalf of ${caller.who}`).toBe(caller.error)
    if (caller.error === "Unauthenticated" || caller.error === "Forbidden") {
      expect(failure?._tag === "Some" && failure.value).toBeInstanceOf(caller.error === "Unauthenticated" ? Caller.Unauthenticated : Caller.Forbidden)
    }
  }

  /** Every row of every table in the database, as text: what a refused call must leave alone. */
  const snapshot = () =>
    Effect.runPromise(
      Effect.scoped(Effect.gen(function*() {
        const sql = yield* PgClient.make({ url: Redacted.make(database.url), maxConnections: 1 })
        const tables = yield* sql<{ schema: string; name: string }>`
          SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
          WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'
            -- The workflow engine's runner and shard tables change by themselves (heartbeats, leases),
            -- and so does an outbox relay's lease.
            AND left(table_name, 8) <> 'cluster_' AND table_name <> 'outbox_relay'
          ORDER BY 1, 2`
        const rows: Record<string, unknown> = {}
        for (const { name, schema } of tables) {
          const [dump] = yield* sql.unsafe<{ rows: string }>(
            `SELECT coalesce(string_agg(row_to_json(t)::text, E'\\n' ORDER BY row_to_json(t)::text), '') AS rows FROM "${schema}"."${name}" t`
          )
          rows[`${schema}.${name}`] = dump!.rows
        }
        return rows
      })).pipe(Effect.provide(Reactivity.layer))
    )

  /** The database once it stops changing (a saga finishing its bookkeeping, events relayed and applied): its snapshot. */
  const quiet = async () => {
    let last = await snapshot()
    for (let i = 0; i < 50; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200))
      const now = await snapshot()
      if (JSON.stringify(now) === JSON.stringify(last)) return now
      last = now
    }
    throw new Error("the database kept changing for 10 s")
  }

  beforeAll(async () => {
    if (!postgres.ok) return
    database = await Services.createDatabase(postgres.value)
    server = await TestServer.start(modules, {
      DATABASE_URL: database.url,
      TESSERA_SERVICE_SECRET: SECRET,
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_RATE_LIMIT: "0"
    })
    scope = await Effect.runPromise(Scope.make())
    for (const module of modules) {
      const client = await Effect.runPromise(Scope.extend(
        RemoteClient.make(module.name, module.client.group as RpcGroup.RpcGroup<Rpc.Any>, server.url, {
          secret: Redacted.make(SECRET),
          caller: "authz-sweep"
        }),
        scope
      ))
      clients.set(module.name, client as never)
    }
  }, 120_000)

  afterAll(async () => {
    if (scope) await Effect.runPromise(Scope.close(scope, Exit.void))
    await server?.close()
    await database?.drop()
  })

  it("knows every rpc of the build as guarded or not, and why", () => {
    const unclassified = modules.flatMap((module) =>
      rpcsOf(module)
        .filter((rpc) => [guarded, owned, unguarded].every((table) => table[module.name]?.[rpc] === undefined))
        .map((rpc) => `${module.name}.${rpc}`)
    )
    expect(unclassified, "classify these in main.authz.test.ts: guarded (with who may call and a payload), owned or unguarded (why)")
      .toEqual([])
    const stale = [...Object.entries(guarded), ...Object.entries(owned), ...Object.entries(unguarded)].flatMap(([name, rpcs]) =>
      Object.keys(rpcs).filter((rpc) => !modules.some((m) => m.name === name && rpcsOf(m).includes(rpc))).map((rpc) => `${name}.${rpc}`)
    )
    expect(stale, "these are classified but not in the build").toEqual([])
  })

  const cases = modules.flatMap((module) =>
    Object.entries(guarded[module.name] ?? {}).map(([rpc, spec]) => [`${module.name}.${rpc}`, module.name, rpc, spec] as const)
  )

  it.each(cases)("%s refuses every caller it does not allow, and changes nothing", async (_, module, rpc, spec) => {
    const payload = await asAdmin(spec.payload(call))
    // Once the events of preparing it (a product created, a shipment created...) have been relayed and applied.
    const before = await quiet()
    for (const caller of refusedCallers(spec.allows)) await expectRefused(module, rpc, payload, caller)
    expect(await snapshot()).toEqual(before)
  }, 60_000)

  const ownedCases = modules.flatMap((module) =>
    Object.entries(owned[module.name] ?? {}).map(([rpc, spec]) => [`${module.name}.${rpc}`, module.name, rpc, spec] as const)
  )

  it.each(ownedCases)("%s on its owner's account: refuses anyone else as the owner's rpc says, and changes nothing", async (_, module, rpc, spec) => {
    const payload = await asOwner(spec.payload(call, Caller.withCaller(admin)))
    const before = await quiet()
    for (const caller of refusedOwnedCallers(spec.others)) await expectRefused(module, rpc, payload, caller)
    expect(await snapshot()).toEqual(before)
  }, 60_000)

  it.each(ownedCases)("%s: the owner's own call changes something", async (_, module, rpc, spec) => {
    const payload = await asOwner(spec.payload(call, Caller.withCaller(admin)))
    const before = await quiet()
    const exit = await Effect.runPromiseExit(Caller.withCaller(owner)(call(module, rpc, payload)))
    expect(Exit.isSuccess(exit), `${module}.${rpc}: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""}`).toBe(true)
    expect(await snapshot(), `${module}.${rpc} changed nothing`).not.toEqual(before)
  }, 60_000)

  it.each(ownReads)("%s.%s, a read of the caller's own, refuses no one", async (module, rpc, payload) => {
    await expectRefused(module, rpc, payload, { who: "no one", run: Caller.anonymous, error: "Unauthenticated" })
    const exit = await Effect.runPromiseExit(Caller.withCaller(customer)(call(module, rpc, payload)))
    expect(Exit.isSuccess(exit), `${module}.${rpc}: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""}`).toBe(true)
  })

  it("lets the admin and the named modules make the same calls, and sees what they change", async () => {
    for (const [module, rpcs] of Object.entries(guarded)) {
      for (const [rpc, spec] of Object.entries(rpcs)) {
        for (const run of [Caller.withCaller(admin), ...spec.allows.map((name) => Caller.asService(name))]) {
          const payload = await asAdmin(spec.payload(call))
          const before = await snapshot()
          const exit = await Effect.runPromiseExit(run(call(module, rpc, payload)))
          expect(Exit.isSuccess(exit), `${module}.${rpc}: ${Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""}`).toBe(true)
          expect(await snapshot(), `${module}.${rpc} changed nothing`).not.toEqual(before)
        }
      }
    }
  }, 120_000)
})
