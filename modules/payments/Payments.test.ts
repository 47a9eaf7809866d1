/**
 * Payments through its public client, against the payment provider simulator: in process (on
 * PostgreSQL and embedded) and over the wire (payments served alone, called with the service
 * credential). The same cases run in both: every token's outcome, one charge per payment in the
 * provider's ledger however often it is charged, refunds, who may call what, and the provider's
 * breaker opening and closing again. Last, the release as two processes, payments and
 * `tessera psp-sim`, payments killed (SIGKILL) and restarted between two charges of one payment.
 */
import { Context, Effect, Either, Exit, Layer, ManagedRuntime, Redacted, Scope } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import * as Caller from "../../runtime/security/Caller.ts"
import * as Processes from "../../runtime/testing/Processes.ts"
import * as Services from "../../runtime/testing/Services.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import * as TestServer from "../../runtime/testing/TestServer.ts"
import * as RemoteClient from "../../runtime/transport/RemoteClient.ts"
import type { Currency } from "../catalog/index.ts"
import { chargeKey } from "./internal/Payments.ts"
import * as PspSim from "./internal/PspSim.ts"
import {
  type ChargeRequest,
  PaymentDeclined,
  type PaymentId,
  PaymentNotFound,
  PaymentsClient,
  PaymentsRpcs,
  PaymentUnavailable
} from "./PaymentsApi.ts"
import { PaymentsModule } from "./PaymentsModule.ts"

/** The simulator a suite's payments calls. */
class Sim extends Context.Tag("test/Sim")<Sim, PspSim.PspSim>() {}

/**
 * The provider's policy, quick to try again once open, so that the breaker case is short. Its
 * breaker judges at least 10 calls (the default), so that tok_flaky's 503s do not open it.
 */
const PROVIDER_POLICY = {
  TESSERA_PAYMENT_PROVIDER_BREAKER_OPEN_FOR: "500 millis",
  TESSERA_PAYMENT_PROVIDER_CALL_TIMEOUT: "1 second"
}
const SECRET = "payments-test-secret-payments-test-secret"

const orders = Caller.service("orders")
const admin = new Caller.Caller({ kind: "user", id: "admin-1", role: "admin" })
const customerOf = (id: string) => new Caller.Caller({ kind: "user", id, role: "customer" })

type Run = <A, E>(effect: Effect.Effect<A, E, PaymentsClient | Sim>) => Promise<A>

/** The cases, run against one deployment of payments. */
const cases = (run: Run) => {
  const sim = () => run(Sim)
  const request = (token: string, fields: Partial<ChargeRequest> = {}): ChargeRequest => ({
    paymentId: `pay-${crypto.randomUUID()}` as PaymentId,
    orderId: `ord-${crypto.randomUUID()}`,
    customerId: `cus-${crypto.randomUUID()}`,
    amountCents: 4200,
    currency: "EUR" as Currency,
    token,
    ...fields
  })
  /** On `caller`'s behalf; null: on no one's. */
  const as = (caller: Caller.Caller | null) => <A, E>(effect: Effect.Effect<A, E, PaymentsClient | Sim>) =>
    caller === null ? Caller.anonymous(effect) : Caller.withCaller(caller)(effect)
  const charge = (r: ChargeRequest, caller: Caller.Caller | null = orders) =>
    run(Effect.either(as(caller)(Effect.flatMap(PaymentsClient, (c) => c.charge(r)))))
  const refund = (paymentId: PaymentId, caller: Caller.Caller | null = orders) =>
    run(Effect.either(as(caller)(Effect.flatMap(PaymentsClient, (c) => c.refund({ paymentId })))))
  const byOrder = (orderId: string, caller: Caller.Caller | null) =>
    run(Effect.either(as(caller)(Effect.flatMap(PaymentsClient, (c) => c.byOrder({ orderId })))))
  /** The provider's charges made for `paymentId`. */
  const charges = async (paymentId: string) => (await sim()).ledger().charges.filter((c) => c.idempotencyKey === chargeKey(paymentId))
  const refunds = async (chargeId: string) => (await sim()).ledger().refunds.filter((r) => r.chargeId === chargeId)
  const behave = async (behaviour: Partial<PspSim.Behaviour>) => {
    const response = await fetch(`${(await sim()).url}/admin/behaviour`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(behaviour)
    })
    expect(response.status).toBe(200)
  }
  const left = <A, E>(result: Either.Either<A, E>) => {
    if (Either.isRight(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.right)}`)
    return result.left
  }
  const right = <A, E>(result: Either.Either<A, E>) => {
    if (Either.isLeft(result)) throw new Error(`expected a success, got ${JSON.stringify(result.left)}`)
    return result.right
  }

  /**
   * Waits until a charge goes through: a case that made the provider fail leaves its breaker
   * open for a moment (500 ms, and longer on a loaded machine), which the next case must not meet.
   */
  beforeEach(async () => {
    for (const deadline = Date.now() + 15_000; Date.now() < deadline;) {
      if (Either.isRight(await charge(request("tok_ok")))) return
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error("the provider did not come back within 15 s")
  })

  it("charges tok_ok once: the same payment again answers the same and charges nothing more", async () => {
    const r = request("tok_ok")
    const first = right(await charge(r))
    expect(first).toMatchObject({ paymentId: r.paymentId, orderId: r.orderId, customerId: r.customerId, status: "charged", amountCents: 4200, currency: "EUR" })
    expect(right(await charge(r))).toEqual(first)
    expect(right(await charge(r, admin))).toEqual(first)
    const made = await charges(r.paymentId)
    expect(made).toHaveLength(1)
    expect(made[0]).toMatchObject({ id: first.providerChargeId, status: "succeeded", amountCents: 4200, currency: "EUR" })
  })

  it("declines tok_decline, and stays declined", async () => {
    const r = request("tok_decline")
    expect(left(await charge(r))).toBeInstanceOf(PaymentDeclined)
    expect(left(await charge({ ...r, token: "tok_ok" }))).toBeInstanceOf(PaymentDeclined)
    expect(await charges(r.paymentId)).toMatchObject([{ status: "declined" }])
    expect(right(await byOrder(r.orderId, orders))).toMatchObject({ status: "declined" })
  })

  it("resolves tok_ambiguous (charged, answer lost) by asking the provider: exactly one charge", async () => {
    const r = request("tok_ambiguous")
    const payment = right(await charge(r))
    expect(payment.status).toBe("charged")
    const made = await charges(r.paymentId)
    expect(made).toHaveLength(1)
    expect(made[0]!.id).toBe(payment.providerChargeId)
    // Resolved by asking, not by sending the charge again.
    expect((await sim()).ledger().chargeRequests[chargeKey(r.paymentId)]).toBe(1)
    expect(right(await charge(r))).toEqual(payment)
    expect(await charges(r.paymentId)).toHaveLength(1)
  })

  it("resolves tok_slow (no answer within the attempt's timeout) by asking the provider: exactly one charge", async () => {
    const r = request("tok_slow")
    const payment = right(await charge(r))
    expect(payment.status).toBe("charged")
    expect(await charges(r.paymentId)).toMatchObject([{ id: payment.providerChargeId }])
    expect((await sim()).ledger().chargeRequests[chargeKey(r.paymentId)]).toBe(1)
  }, 20_000)

  it("charges tok_flaky once, retried under the same payment until the provider answers", async () => {
    const r = request("tok_flaky")
    let result = await charge(r)
    for (let attempt = 0; attempt < 20 && Either.isLeft(result); attempt++) {
      expect(result.left).toBeInstanceOf(PaymentUnavailable)
      await new Promise((resolve) => setTimeout(resolve, 100))
      result = await charge(r)
    }
    expect(right(result).status).toBe("charged")
    expect(await charges(r.paymentId)).toHaveLength(1)
  })

  it("charges once for concurrent charges of one payment", async () => {
    const r = request("tok_ok")
    const answers = await Promise.all(Array.from({ length: 8 }, () => charge(r)))
    const payments = answers.map(right)
    expect(new Set(payments.map((p) => p.providerChargeId)).size).toBe(1)
    expect(await charges(r.paymentId)).toHaveLength(1)
  })

  it("leaves a charge whose answer is lost and whose provider cannot be asked unresolved, and resolves it later", async () => {
    const r = request("tok_slow")
    // The charge reaches the provider (recorded at once, answered in 5 s); then the provider fails
    // every call, so that the attempt's timeout (1 s) is followed by lookups that fail too.
    const first = charge(r)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await behave({ errorRate: 1 })
    try {
      const unresolved = left(await first)
      expect(unresolved).toBeInstanceOf(PaymentUnavailable)
      expect(left(await byOrder(r.orderId, orders))).toBeInstanceOf(PaymentNotFound)
    } finally {
      await behave({ errorRate: 0 })
    }
    expect(await charges(r.paymentId)).toHaveLength(1)
    // The same payment again asks the provider by key: the charge it made, not a second one.
    const resolved = right(await charge(r))
    expect(resolved.status).toBe("charged")
    expect(await charges(r.paymentId)).toMatchObject([{ id: resolved.providerChargeId }])
    expect((await sim()).ledger().chargeRequests[chargeKey(r.paymentId)]).toBe(1)
  }, 20_000)

  it("voids no payment whose charge may still reach the provider: a charge landing after a refund asked too early is refunded", async () => {
    const r = request("tok_ok")
    // The charge reaches the provider, which makes it only 2.5 s later; payments gives up at 1 s.
    await behave({ latencyMs: 2500 })
    const first = charge(r)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await behave({ latencyMs: 0 })
    // The provider has no charge under the key yet; one is on its way: not voided.
    expect(left(await refund(r.paymentId))).toBeInstanceOf(PaymentUnavailable)
    await first
    for (let i = 0; i < 100 && (await charges(r.paymentId)).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50))
    const made = await charges(r.paymentId)
    expect(made).toHaveLength(1)
    expect(right(await refund(r.paymentId))).toMatchObject({ status: "refunded", providerChargeId: made[0]!.id })
    expect(await refunds(made[0]!.id)).toHaveLength(1)
  }, 20_000)

  it("refunds a charged payment once; refunding again changes nothing", async () => {
    const r = request("tok_ok")
    const charged = right(await charge(r))
    const refunded = right(await refund(r.paymentId))
    expect(refunded).toMatchObject({ paymentId: r.paymentId, status: "refunded", providerChargeId: charged.providerChargeId })
    expect(right(await refund(r.paymentId, admin))).toMatchObject({ status: "refunded" })
    expect(await refunds(charged.providerChargeId!)).toHaveLength(1)
    // A charge under a refunded payment charges nothing.
    expect(right(await charge(r))).toMatchObject({ status: "refunded" })
    expect(await charges(r.paymentId)).toHaveLength(1)
    expect(right(await byOrder(r.orderId, orders))).toMatchObject({ status: "refunded" })
  })

  it("answers a declined payment's refund with the payment, and an unknown payment's with PaymentNotFound", async () => {
    const r = request("tok_decline")
    await charge(r)
    expect(right(await refund(r.paymentId))).toMatchObject({ status: "declined" })
    expect(left(await refund(`pay-${crypto.randomUUID()}` as PaymentId))).toBeInstanceOf(PaymentNotFound)
  })

  it("refuses charge and refund to a customer, to another service and to a call with no identity, charging nothing", async () => {
    const r = request("tok_ok")
    expect(left(await charge(r, customerOf(r.customerId)))).toBeInstanceOf(Caller.Forbidden)
    expect(left(await charge(r, Caller.service("shipping")))).toBeInstanceOf(Caller.Forbidden)
    expect(left(await charge(r, null))).toBeInstanceOf(Caller.Unauthenticated)
    expect(await charges(r.paymentId)).toHaveLength(0)
    right(await charge(r))
    expect(left(await refund(r.paymentId, customerOf(r.customerId)))).toBeInstanceOf(Caller.Forbidden)
    expect(left(await refund(r.paymentId, null))).toBeInstanceOf(Caller.Unauthenticated)
    expect(right(await byOrder(r.orderId, orders)).status).toBe("charged")
  })

  it("shows an order's payment to orders, an admin and its customer; to anyone else it does not exist", async () => {
    const r = request("tok_ok")
    right(await charge(r))
    for (const caller of [orders, admin, customerOf(r.customerId)]) {
      expect(right(await byOrder(r.orderId, caller))).toMatchObject({ paymentId: r.paymentId, status: "charged" })
    }
    expect(left(await byOrder(r.orderId, customerOf("someone-else")))).toBeInstanceOf(PaymentNotFound)
    expect(left(await byOrder(r.orderId, Caller.service("shipping")))).toBeInstanceOf(PaymentNotFound)
    expect(left(await byOrder(r.orderId, null))).toBeInstanceOf(Caller.Unauthenticated)
    expect(left(await byOrder(`ord-${crypto.randomUUID()}`, admin))).toBeInstanceOf(PaymentNotFound)
  })

  it("with the provider failing, opens its breaker and fails charges fast with PaymentUnavailable; then recovers", async () => {
    await behave({ errorRate: 1 })
    try {
      const failures: Array<unknown> = []
      for (let i = 0; i < 12; i++) failures.push(left(await charge(request("tok_ok"))))
      expect(failures.every((f) => f instanceof PaymentUnavailable)).toBe(true)
      expect((failures.at(-1) as PaymentUnavailable).reason).toMatch(/circuit breaker is open/)
      // Refused here, unsent: well under a second, and nothing reaches the provider.
      const r = request("tok_ok")
      const started = Date.now()
      expect(left(await charge(r))).toBeInstanceOf(PaymentUnavailable)
      expect(Date.now() - started).toBeLessThan(1_000)
      expect(await charges(r.paymentId)).toHaveLength(0)
      // Its refund (the saga's compensation) need not ask the provider: nothing was sent. Voided
      // at once, breaker open or not, so the order ends now; a charge again sends nothing.
      expect(right(await refund(r.paymentId))).toMatchObject({ status: "refunded" })
      expect(Date.now() - started).toBeLessThan(1_000)
      expect(right(await charge(r))).toMatchObject({ status: "refunded" })
    } finally {
      await behave({ errorRate: 0 })
    }
    // Recovered, without a restart: the breaker lets a probe through once it has been open a while.
    const r = request("tok_ok")
    let result = await charge(r)
    for (let attempt = 0; attempt < 40 && Either.isLeft(result); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      result = await charge(r)
    }
    expect(right(result).status).toBe("charged")
    expect(await charges(r.paymentId)).toHaveLength(1)
  }, 20_000)
}

TestHost.describeOnDatabases(
  "payments in process",
  (database) =>
    Layer.unwrapScoped(Effect.map(PspSim.scoped(), (sim) =>
      Layer.merge(
        TestHost.layer([PaymentsModule], database, [], { ...PROVIDER_POLICY, TESSERA_PAYMENT_PROVIDER_URL: sim.url }),
        Layer.succeed(Sim, sim)
      ))) as Layer.Layer<PaymentsClient | Sim, unknown>,
  cases
)

describe("payments over the wire", () => {
  let sim: PspSim.PspSim | undefined
  let server: TestServer.TestServer | undefined
  let runtime: ManagedRuntime.ManagedRuntime<PaymentsClient | Sim, unknown> | undefined
  beforeAll(async () => {
    sim = await PspSim.start()
    server = await TestServer.startOnTestDatabase([PaymentsModule], {
      ...PROVIDER_POLICY,
      TESSERA_MODULES: "payments",
      TESSERA_SERVICE_SECRET: SECRET,
      TESSERA_PAYMENT_PROVIDER_URL: sim.url
    })
    const client = Layer.scoped(
      PaymentsClient,
      RemoteClient.make("payments", PaymentsRpcs, server.url, { secret: Redacted.make(SECRET), caller: "tests" })
    )
    runtime = ManagedRuntime.make(Layer.merge(client, Layer.succeed(Sim, sim)))
    await runtime.runtime()
  }, 60_000)
  afterAll(async () => {
    await runtime?.dispose()
    await server?.close()
    await sim?.close()
  })
  cases((effect) => runtime!.runPromise(effect))
})

describe("payments with no provider configured", () => {
  it("starts a simulator in its own process and charges through it", async () => {
    const found = (await Services.databases()).find((d) => typeof d.acquire !== "string")!
    const db = await (found.acquire as () => Promise<Services.TestDatabase>)()
    const runtime = ManagedRuntime.make(TestHost.layer([PaymentsModule], db.database) as Layer.Layer<PaymentsClient, unknown>)
    try {
      const payment = await runtime.runPromise(Caller.asService("orders")(Effect.flatMap(PaymentsClient, (c) =>
        c.charge({
          paymentId: "pay-in-process" as PaymentId,
          orderId: "ord-1",
          customerId: "cus-1",
          amountCents: 100,
          currency: "USD" as Currency,
          token: "tok_ok"
        }))))
      expect(payment).toMatchObject({ status: "charged", providerChargeId: expect.stringMatching(/^ch_/) })
    } finally {
      await runtime.dispose()
      await db.release()
    }
  }, 60_000)
})

describe.runIf((await Services.findPostgres()).ok)("payments as a process of its own, the provider another (psp-sim)", () => {
  it("resolves tok_ambiguous across processes, and a payment survives its process's SIGKILL: one charge", async () => {
    const postgres = await Services.findPostgres()
    if (!postgres.ok) return
    const db = await Services.createDatabase(postgres.value)
    const simPort = await Processes.freePort()
    const provider = Processes.spawnCommand(["psp-sim", "--port", String(simPort)], {})
    const simUrl = `http://127.0.0.1:${simPort}`
    const port = await Processes.freePort()
    const env = { DATABASE_URL: db.url, TESSERA_MODULES: "payments", TESSERA_SERVICE_SECRET: SECRET, TESSERA_PAYMENT_PROVIDER_URL: simUrl }
    let payments = Processes.spawnServer(port, env)
    const scope = await Effect.runPromise(Scope.make())
    try {
      await Processes.waitReady(payments)
      const client = await Effect.runPromise(
        Scope.extend(RemoteClient.make("payments", PaymentsRpcs, payments.url, { secret: Redacted.make(SECRET), caller: "tests" }), scope)
      )
      const r: ChargeRequest = {
        paymentId: `pay-${crypto.randomUUID()}` as PaymentId,
        orderId: "ord-process",
        customerId: "cus-process",
        amountCents: 700,
        currency: "EUR" as Currency,
        token: "tok_ambiguous"
      }
      const charge = () => Effect.runPromise(Caller.asService("orders")(client.charge(r)))
      const ledger = async () => (await (await fetch(`${simUrl}/admin/ledger`)).json()) as PspSim.Ledger
      const first = await charge()
      expect(first.status).toBe("charged")
      payments.process.kill("SIGKILL")
      await payments.exited
      payments = Processes.spawnServer(port, env)
      await Processes.waitReady(payments)
      // The client dials the restarted process again.
      let again = await Effect.runPromise(Effect.either(Caller.asService("orders")(client.charge(r))))
      for (let i = 0; i < 50 && Either.isLeft(again); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        again = await Effect.runPromise(Effect.either(Caller.asService("orders")(client.charge(r))))
      }
      expect(Either.getOrThrow(again)).toEqual(first)
      const { chargeRequests, charges } = await ledger()
      expect(charges.filter((c) => c.idempotencyKey === chargeKey(r.paymentId))).toHaveLength(1)
      expect(chargeRequests[chargeKey(r.paymentId)]).toBe(1)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await payments.stop()
      await provider.stop()
      await db.drop()
    }
  }, 90_000)
})
