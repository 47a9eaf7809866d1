/**
 * Orders through its public client, in process on PostgreSQL and on embedded PostgreSQL, its
 * saga on the runtime's durable engine, the modules it calls faked (Fakes.ts): every outcome of
 * the order saga, idempotent placing, and who may see what. main.orders.test.ts runs the same
 * flow with the real modules over REST.
 */
import { HttpApi, OpenApi } from "@effect/platform"
import { Effect, Either, Option } from "effect"
import { expect, it } from "vitest"
import * as Caller from "../../runtime/security/Caller.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import type { ProductId } from "../catalog/index.ts"
import { IdempotencyKeyReused, type NewOrder, type Order, OrderItemRefused, OrderNotCancellable, OrderNotFound, OrdersClient } from "./OrdersApi.ts"
import { OrdersHttp } from "./OrdersHttp.ts"
import { OrdersModule } from "./OrdersModule.ts"
import * as Fakes from "./Fakes.ts"

const fakes = Fakes.make()
const admin = new Caller.Caller({ kind: "user", id: "admin-1", role: "admin" })
const customer = () => new Caller.Caller({ kind: "user", id: `c-${crypto.randomUUID()}`, role: "customer" })
const address = { name: "Ada Lovelace", line1: "1 Analytical St", city: "London", postalCode: "N1 9GU", country: "GB" }

TestHost.describeOnDatabases(
  "orders",
  (database) =>
    TestHost.layer([OrdersModule], database, fakes.stubs, { TESSERA_SAGA_RETRY_BACKOFF: "20 millis", TESSERA_SAGA_STUCK_AFTER: "3" }),
  (run) => {
    const as = (caller: Caller.Caller) => ({
      orders: <A, E>(f: (c: OrdersClient["Type"]) => Effect.Effect<A, E>) => run(Caller.withCaller(caller)(Effect.flatMap(OrdersClient, f))),
      fail: <A, E>(f: (c: OrdersClient["Type"]) => Effect.Effect<A, E>) =>
        run(Effect.flip(Caller.withCaller(caller)(Effect.flatMap(OrdersClient, f))))
    })

    const product = async (units: number, priceCents = 250, currency = "EUR") => fakes.product(units, priceCents, currency)
    const stock = async (productId: ProductId) => fakes.levelsOf(productId)

    const order = (productId: ProductId, fields: Partial<NewOrder> = {}) => ({
      items: [{ productId, quantity: 2 }] as NewOrder["items"],
      shippingAddress: address,
      paymentToken: "tok_ok",
      idempotencyKey: crypto.randomUUID(),
      ...fields
    })

    /** The order once its saga has decided (status no longer PENDING, saga no longer running). */
    const settled = async (caller: Caller.Caller, id: Order["id"], until = (o: Order) => o.status !== "PENDING") => {
      for (let i = 0; i < 200; i++) {
        const found = await as(caller).orders((c) => c.get({ id }))
        if (until(found)) return found
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      const sagas = await as(admin).orders((c) => c.listSagas({ limit: 100 }))
      throw new Error(`order ${id} did not settle: ${JSON.stringify(sagas.items.filter((s) => s.subject === id))}`)
    }

    /**
     * The order's PlaceOrder saga once it is in `state`: the saga records its end just after its
     * last step decides the order, so an order already settled may show a saga still ending.
     */
    const sagaOf = async (orderId: string, state: "completed" | "compensated") => {
      for (let i = 0; i < 200; i++) {
        const page = await as(admin).orders((c) => c.listSagas({ state, limit: 100 }))
        const saga = page.items.find((s) => s.subject === orderId && s.workflow === "orders/PlaceOrder")
        if (saga !== undefined) return saga
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      throw new Error(`the saga of order ${orderId} did not reach ${state}`)
    }

    it("confirms a paid order: stock sold, one charge of the catalog's price, a shipment, all as the service orders", async () => {
      const buyer = customer()
      const lamp = await product(5, 250)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      expect(placed).toMatchObject({ status: "PENDING", totalCents: 500, currency: "EUR", customerId: buyer.id })
      expect(placed.items).toEqual([{ productId: lamp, quantity: 2, unitPriceCents: 250 }])
      const done = await settled(buyer, placed.id)
      expect(done.status).toBe("CONFIRMED")
      expect(done.failureReason).toBeUndefined()
      expect(await stock(lamp)).toEqual({ available: 3, reserved: 0 })
      const payment = await as(buyer).orders((c) => c.payment({ id: placed.id }))
      expect(payment).toMatchObject({ status: "charged", amountCents: 500, paymentId: `order-${placed.id}` })
      // Created on hold, released by the confirmation.
      expect(await as(buyer).orders((c) => c.shipment({ id: placed.id }))).toMatchObject({ status: "ready" })
      const ofOrder = (payload: any) => payload.orderId === placed.id || payload.reservationId === `order-${placed.id}`
      const sagaCalls = fakes.calls.filter((c) => !c.rpc.endsWith("byOrder") && ofOrder(c.payload))
      expect(sagaCalls.map((c) => c.rpc)).toEqual(["inventory.reserve", "payments.charge", "shipping.create", "inventory.commit", "shipping.release"])
      expect(sagaCalls[0]!.payload).toMatchObject({ reservationId: `order-${placed.id}`, lines: [{ productId: lamp, quantity: 2 }] })
      for (const call of sagaCalls) expect(call.caller).toEqual(Option.some(Caller.service("orders")))
    })

    it("cancels a declined order with PAYMENT_DECLINED and its stock released, never shipping it", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp, { paymentToken: "tok_decline" })))
      const done = await settled(buyer, placed.id)
      expect(done).toMatchObject({ status: "CANCELLED", failureReason: "PAYMENT_DECLINED" })
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
      expect(fakes.shipments.has(placed.id)).toBe(false)
    })

    it("cancels an order the provider cannot take with PAYMENT_UNAVAILABLE, stock released", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp, { paymentToken: "tok_unavailable" })))
      expect(await settled(buyer, placed.id)).toMatchObject({ status: "CANCELLED", failureReason: "PAYMENT_UNAVAILABLE" })
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
    })

    it("ends an order whose saga died on what it does not expect CANCELLED with ORDER_FAILED: refunded, stock released, the defect shown", async () => {
      const buyer = customer()
      fakes.breakShippingFor(buyer.id)
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      const done = await settled(buyer, placed.id)
      expect(done).toMatchObject({ status: "CANCELLED", failureReason: "ORDER_FAILED" })
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
      expect(fakes.payments.get(`order-${placed.id}`)?.status).toBe("refunded")
      // Tried again a few times (a defect may pass) before the saga gave up.
      const creates = fakes.calls.filter((c) => c.rpc === "shipping.create" && (c.payload as { orderId: string }).orderId === placed.id)
      expect(creates.length).toBeGreaterThan(1)
      const saga = await sagaOf(placed.id, "compensated")
      expect(saga.error).toContain("Forbidden")
      expect(saga.steps.map((s) => `${s.phase} ${s.step} ${s.status}`)).toEqual([
        "action reserve-stock succeeded",
        "action charge succeeded",
        "action create-shipment failed",
        "compensation charge succeeded",
        "compensation reserve-stock succeeded"
      ])
      expect(saga.steps[2]!.attempts).toBe(creates.length)
    })

    it("documents ORDER_FAILED and the shipment's statuses in the OpenAPI document", () => {
      const document = JSON.stringify(OpenApi.fromApi(HttpApi.make("orders").add(OrdersHttp)))
      expect(document).toContain(`"ORDER_FAILED"`)
      for (const status of ["on_hold", "ready", "shipped", "cancelled"]) expect(document).toContain(`"${status}"`)
    })

    it("cancels an order of more than the stock with OUT_OF_STOCK, charging nothing", async () => {
      const buyer = customer()
      const lamp = await product(1)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      expect(await settled(buyer, placed.id)).toMatchObject({ status: "CANCELLED", failureReason: "OUT_OF_STOCK" })
      expect(await stock(lamp)).toEqual({ available: 1, reserved: 0 })
      expect(fakes.payments.has(`order-${placed.id}`)).toBe(false)
    })

    it("cancels a confirmed order for its customer: refunded, stock back, shipment cancelled", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      await settled(buyer, placed.id)
      const asked = await as(buyer).orders((c) => c.cancel({ id: placed.id }))
      expect(asked.id).toBe(placed.id)
      const done = await settled(buyer, placed.id, (o) => o.status === "CANCELLED")
      expect(done.failureReason).toBe("CANCELLED_BY_CUSTOMER")
      expect(fakes.payments.get(`order-${placed.id}`)?.status).toBe("refunded")
      expect(fakes.shipments.get(placed.id)?.status).toBe("cancelled")
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
      // Again: the same answer, nothing undone twice.
      expect((await as(buyer).orders((c) => c.cancel({ id: placed.id }))).status).toBe("CANCELLED")
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
    })

    it("shows a cancel that cannot finish as stuck, with the failing step's error, and ends it once it can", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      await settled(buyer, placed.id)
      const paymentId = `order-${placed.id}`
      fakes.unrefundable.add(paymentId)
      const cancelSaga = async () =>
        (await as(admin).orders((c) => c.listSagas({ limit: 100 }))).items.find((s) =>
          s.subject === placed.id && s.workflow === "orders/CancelOrder"
        )
      try {
        await as(buyer).orders((c) => c.cancel({ id: placed.id }))
        let stuck = await cancelSaga()
        for (let i = 0; i < 200 && stuck?.state !== "stuck"; i++) {
          await new Promise((resolve) => setTimeout(resolve, 25))
          stuck = await cancelSaga()
        }
        expect(stuck?.state).toBe("stuck")
        const refund = stuck!.steps.find((s) => s.step === "refund")!
        expect(refund).toMatchObject({ phase: "action", status: "running" })
        expect(refund.error).toContain("PaymentUnavailable")
        expect(refund.attempts).toBeGreaterThanOrEqual(4)
        expect((await as(buyer).orders((c) => c.get({ id: placed.id }))).status).toBe("CONFIRMED")
      } finally {
        fakes.unrefundable.delete(paymentId)
      }
      const done = await settled(buyer, placed.id, (o) => o.status === "CANCELLED")
      expect(done.failureReason).toBe("CANCELLED_BY_CUSTOMER")
      expect(fakes.payments.get(paymentId)?.status).toBe("refunded")
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
      let saga = await cancelSaga()
      for (let i = 0; i < 200 && saga?.state !== "completed"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25))
        saga = await cancelSaga()
      }
      expect(saga).toMatchObject({ state: "completed", error: null })
    })

    it("refuses one product on two lines, naming the second, and reserves nothing", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const refused = await as(buyer).fail((c) =>
        c.place(order(lamp, { items: [{ productId: lamp, quantity: 1 }, { productId: lamp, quantity: 2 }] as NewOrder["items"] })))
      expect(refused).toBeInstanceOf(OrderItemRefused)
      expect((refused as OrderItemRefused).field).toBe("items.1.productId")
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
    })

    it("cancels an order asked to be cancelled while pending, before it confirms", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      await as(buyer).orders((c) => c.cancel({ id: placed.id }))
      const done = await settled(buyer, placed.id, (o) => o.status === "CANCELLED")
      expect(done.failureReason).toBe("CANCELLED_BY_CUSTOMER")
      expect(await stock(lamp)).toEqual({ available: 5, reserved: 0 })
      const payment = fakes.payments.get(`order-${placed.id}`)
      expect(payment === undefined || payment.status === "refunded").toBe(true)
      // Its shipment, if made, was never released: it could not have left.
      const shipment = fakes.shipments.get(placed.id)
      expect(shipment === undefined || shipment.status === "cancelled").toBe(true)
      expect(fakes.calls.some((c) => c.rpc === "shipping.release" && (c.payload as { orderId: string }).orderId === placed.id)).toBe(false)
    })

    it("refuses to cancel an order that has shipped", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      await settled(buyer, placed.id)
      fakes.ship(placed.id)
      expect(await as(buyer).fail((c) => c.cancel({ id: placed.id }))).toBeInstanceOf(OrderNotCancellable)
      expect((await as(buyer).orders((c) => c.get({ id: placed.id }))).status).toBe("CONFIRMED")
    })

    it("places once per idempotency key: the same order again, another order refused, per customer", async () => {
      const buyer = customer()
      const lamp = await product(10)
      const request = order(lamp)
      const first = await as(buyer).orders((c) => c.place(request))
      const again = await as(buyer).orders((c) => c.place(request))
      expect(again.id).toBe(first.id)
      const concurrent = await Promise.all([1, 2, 3].map(() => as(buyer).orders((c) => c.place(request))))
      expect(new Set(concurrent.map((o) => o.id))).toEqual(new Set([first.id]))
      const other = await as(buyer).fail((c) => c.place({ ...request, paymentToken: "tok_decline" }))
      expect(other).toBeInstanceOf(IdempotencyKeyReused)
      // Another customer's key is theirs.
      const stranger = await as(customer()).orders((c) => c.place(request))
      expect(stranger.id).not.toBe(first.id)
      await settled(buyer, first.id)
      expect(fakes.calls.filter((c) => c.rpc === "payments.charge" && (c.payload as { orderId: string }).orderId === first.id))
        .toHaveLength(1)
    })

    it("refuses unknown products and mixed currencies, naming the item", async () => {
      const buyer = customer()
      const eur = await product(5, 100, "EUR")
      const usd = await product(5, 100, "USD")
      const unknown = crypto.randomUUID() as ProductId
      const missing = await as(buyer).fail((c) =>
        c.place(order(eur, { items: [{ productId: eur, quantity: 1 }, { productId: unknown, quantity: 1 }] })))
      expect(missing).toEqual(new OrderItemRefused({ field: "items.1.productId", reason: "no product has this id" }))
      const mixed = await as(buyer).fail((c) =>
        c.place(order(eur, { items: [{ productId: eur, quantity: 1 }, { productId: usd, quantity: 1 }] })))
      expect(mixed).toBeInstanceOf(OrderItemRefused)
      expect((mixed as OrderItemRefused).field).toBe("items.1.productId")
    })

    it("shows an order to its owner and admins only; lists a customer's own, an admin's all by status", async () => {
      const buyer = customer()
      const lamp = await product(10)
      const placed = await as(buyer).orders((c) => c.place(order(lamp)))
      expect(await as(customer()).fail((c) => c.get({ id: placed.id }))).toEqual(new OrderNotFound({ orderId: placed.id }))
      expect(await as(customer()).fail((c) => c.payment({ id: placed.id }))).toBeInstanceOf(OrderNotFound)
      expect(await as(customer()).fail((c) => c.cancel({ id: placed.id }))).toBeInstanceOf(OrderNotFound)
      expect((await as(admin).orders((c) => c.get({ id: placed.id }))).id).toBe(placed.id)
      const anonymous = await run(Effect.flip(Caller.anonymous(Effect.flatMap(OrdersClient, (c) => c.get({ id: placed.id })))))
      expect(anonymous).toBeInstanceOf(Caller.Unauthenticated)

      const second = await as(buyer).orders((c) => c.place(order(lamp)))
      await settled(buyer, placed.id)
      await settled(buyer, second.id)
      const page1 = await as(buyer).orders((c) => c.list({ limit: 1 }))
      expect(page1.items.map((o) => o.id)).toEqual([second.id])
      const page2 = await as(buyer).orders((c) => c.list({ limit: 1, cursor: page1.nextCursor! }))
      expect(page2.items.map((o) => o.id)).toEqual([placed.id])
      expect(page2.nextCursor).toBeNull()
      const confirmed = await as(admin).orders((c) => c.list({ status: "CONFIRMED", limit: 100 }))
      expect(confirmed.items.every((o) => o.status === "CONFIRMED")).toBe(true)
      expect(confirmed.items.some((o) => o.customerId !== buyer.id)).toBe(true)
    })

    it("pages through orders placed within one millisecond, every one once, at every page size", async () => {
      const buyer = customer()
      const lamp = await product(10)
      const placed: Array<string> = []
      for (let i = 0; i < 4; i++) placed.unshift((await as(buyer).orders((c) => c.place(order(lamp, { items: [{ productId: lamp, quantity: 1 }] })))).id)
      for (const id of placed) await settled(buyer, id as Order["id"])
      await run(TestHost.crowdCreatedAt("orders", "orders", placed))
      for (let limit = 1; limit <= 4; limit++) {
        const walked: Array<string> = []
        let cursor: string | undefined
        do {
          const page = await as(buyer).orders((c) => c.list({ limit, ...(cursor === undefined ? {} : { cursor }) }))
          walked.push(...page.items.map((o) => o.id))
          cursor = page.nextCursor ?? undefined
        } while (cursor !== undefined)
        expect(walked, `limit ${limit}`).toEqual(placed)
      }
    })

    it("shows the sagas with their step history to admins only", async () => {
      const buyer = customer()
      const lamp = await product(5)
      const placed = await as(buyer).orders((c) => c.place(order(lamp, { paymentToken: "tok_decline" })))
      await settled(buyer, placed.id)
      const saga = await sagaOf(placed.id, "compensated")
      expect(saga.state).toBe("compensated")
      expect(saga.error).toContain("PAYMENT_DECLINED")
      expect(saga.steps.map((s) => `${s.phase} ${s.step} ${s.status}`)).toEqual([
        "action reserve-stock succeeded",
        "action charge failed",
        "compensation charge succeeded",
        "compensation reserve-stock succeeded"
      ])
      expect(Either.isLeft(await run(Effect.either(Caller.withCaller(buyer)(Effect.flatMap(OrdersClient, (c) => c.listSagas({})))))))
        .toBe(true)
    })
  }
)
