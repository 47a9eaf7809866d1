/**
 * Notifications through its public client, in process on both databases: the events of orders
 * and shipping, published by stand-ins for those two modules (they publish the real events, from
 * the publishers' index.ts, in their own transactions), become one message each for the order's
 * customer; an event delivered again is still one message, also once its inbox record is gone;
 * each customer reads only their own, newest first, a page at a time.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, Schema } from "effect"
import { expect, it } from "vitest"
import * as Outbox from "../../runtime/messaging/Outbox.ts"
import * as Module from "../../runtime/Module.ts"
import * as Caller from "../../runtime/security/Caller.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { FailureReason, OrderCancelled, OrderConfirmed, OrderId } from "../orders/index.ts"
import { ShipmentCreated } from "../shipping/index.ts"
import { NotificationCursorInvalid, NotificationsClient, type Notification } from "./index.ts"
import { NotificationsModule } from "./NotificationsModule.ts"

/** An outbox row as it was written: enough to write it again under the same id. */
const Published = Schema.Struct({ id: Schema.String, event: Schema.String, aggregate: Schema.String, payload: Schema.Unknown })

/** What a stand-in publisher can do: publish an event, and write one of its outbox rows again. */
const publisherRpcs = <E extends Rpc.Any>(emit: E) =>
  RpcGroup.make(
    emit,
    /** Marks every outbox row unpublished: as if the relay died after the broker had them (each is delivered again). */
    Rpc.make("forgetPublished"),
    /** Writes the row again, same id, once the purge has deleted it: a message delivered again after its inbox record is gone. */
    Rpc.make("republish", { payload: Published })
  )

const OrdersStandIn = publisherRpcs(Rpc.make("emit", {
  payload: {
    orderId: Schema.String,
    customerId: Schema.String,
    outcome: Schema.Union(Schema.Literal("CONFIRMED"), FailureReason)
  },
  success: Published
}))
class OrdersStandInClient extends Module.ModuleClient("orders", OrdersStandIn)<OrdersStandInClient>() {}

const ShippingStandIn = publisherRpcs(Rpc.make("emit", {
  payload: { orderId: Schema.String, customerId: Schema.String, trackingNumber: Schema.String },
  success: Published
}))
class ShippingStandInClient extends Module.ModuleClient("shipping", ShippingStandIn)<ShippingStandInClient>() {}

/** The row the transaction just wrote to the outbox. */
const lastPublished = (sql: SqlClient.SqlClient) =>
  sql<typeof Published.Type>`SELECT id, event, aggregate, payload FROM outbox ORDER BY seq DESC LIMIT 1`.pipe(
    Effect.map(([row]) => row!)
  )

const standInRpcs = (sql: SqlClient.SqlClient) => ({
  forgetPublished: () => Effect.orDie(Effect.asVoid(sql`UPDATE outbox SET published_at = NULL`)),
  republish: (row: typeof Published.Type) =>
    Effect.orDie(Effect.asVoid(sql`INSERT INTO outbox (id, event, aggregate, payload)
      VALUES (${row.id}, ${row.event}, ${row.aggregate}, ${JSON.stringify(row.payload)}::jsonb)`))
})

const OrdersStandInModule = Module.make({
  client: OrdersStandInClient,
  publishes: [OrderConfirmed, OrderCancelled],
  handlers: OrdersStandIn.toLayer(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox.Outbox
    return {
      ...standInRpcs(sql),
      emit: ({ customerId, orderId, outcome }) =>
        sql.withTransaction(Effect.zipRight(
          outcome === "CONFIRMED"
            ? outbox.publish(OrderConfirmed, { orderId: OrderId.make(orderId), customerId, totalCents: 1250, currency: "EUR" as never })
            : outbox.publish(OrderCancelled, { orderId: OrderId.make(orderId), customerId, reason: outcome }),
          lastPublished(sql)
        )).pipe(Effect.orDie)
    }
  }))
})

const ShippingStandInModule = Module.make({
  client: ShippingStandInClient,
  publishes: [ShipmentCreated],
  handlers: ShippingStandIn.toLayer(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox.Outbox
    return {
      ...standInRpcs(sql),
      emit: (shipment) => sql.withTransaction(Effect.zipRight(outbox.publish(ShipmentCreated, shipment), lastPublished(sql))).pipe(Effect.orDie)
    }
  }))
})

/** The inbox records of delivered events are purged a moment after they are applied (for the test past the inbox). */
const RETENTION_MS = 300

const customer = () => new Caller.Caller({ kind: "user", id: crypto.randomUUID(), role: "customer" })

TestHost.describeOnDatabases(
  "notifications",
  (database) =>
    TestHost.layer([OrdersStandInModule, ShippingStandInModule, NotificationsModule], database, [], {
      TESSERA_EVENTS_RETENTION: `${RETENTION_MS} millis`
    }),
  (run) => {
    const as = (who: Caller.Caller) => <A, E>(effect: Effect.Effect<A, E, any>) => run(Caller.withCaller(who)(effect))
    const list = (query: { limit?: number; cursor?: string } = {}) => Effect.flatMap(NotificationsClient, (c) => c.list(query))
    const orders = (effect: (c: OrdersStandInClient["Type"]) => Effect.Effect<any, any>) => run(Effect.flatMap(OrdersStandInClient, effect))
    const shipping = (effect: (c: ShippingStandInClient["Type"]) => Effect.Effect<any, any>) => run(Effect.flatMap(ShippingStandInClient, effect))

    /**
     * The customer's notifications once there are `count` of them. An event for an order that
     * waits for nothing else is applied after every earlier event of that order (a subscriber
     * applies an order's events in the order published), so a marker event shows that any
     * duplicate before it would have arrived.
     */
    const settled = async (who: Caller.Caller, count: number) => {
      const deadline = Date.now() + 15_000
      while (true) {
        const page = await as(who)(list({ limit: 100 }))
        if (page.items.length >= count || Date.now() > deadline) return page.items
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    }

    it("records one message per event for the order's customer: confirmed, cancelled with why, shipment with its tracking number", async () => {
      const ada = customer()
      const orderId = crypto.randomUUID()
      await shipping((c) => c.emit({ orderId, customerId: ada.id, trackingNumber: "TS0123456789ABCDEFGH" }))
      await settled(ada, 1)
      await orders((c) => c.emit({ orderId, customerId: ada.id, outcome: "CONFIRMED" }))
      await settled(ada, 2)
      const other = crypto.randomUUID()
      await orders((c) => c.emit({ orderId: other, customerId: ada.id, outcome: "PAYMENT_DECLINED" }))
      const items = await settled(ada, 3)
      expect(items.map((n) => [n.kind, n.orderId])).toEqual([
        ["order_cancelled", other],
        ["order_confirmed", orderId],
        ["shipment_created", orderId]
      ])
      const [cancelled, confirmed, shipped] = items as [Notification, Notification, Notification]
      expect(shipped.subject).toBe("Your tracking number")
      expect(shipped.body).toContain("TS0123456789ABCDEFGH")
      expect(confirmed.subject).toBe("Your order is confirmed")
      expect(confirmed.body).toContain("€12.50")
      expect(cancelled.subject).toBe("Your order was cancelled")
      expect(cancelled.body).toContain("your payment was declined")
      // Another customer sees none of them.
      expect((await as(customer())(list())).items).toEqual([])
    })

    it("records an event delivered again once: by the inbox, and by its id once the inbox has forgotten it", async () => {
      const ada = customer()
      const orderId = crypto.randomUUID()
      const marker = () => orders((c) => c.emit({ orderId, customerId: ada.id, outcome: "CANCELLED_BY_CUSTOMER" }))
      const published = await orders((c) => c.emit({ orderId, customerId: ada.id, outcome: "CONFIRMED" }))
      expect(await settled(ada, 1)).toHaveLength(1)
      // The relay hands the same message again (its outbox row marked unpublished): the inbox has it.
      await orders((c) => c.forgetPublished())
      const first = await marker()
      const afterRedelivery = await settled(ada, 2)
      expect(afterRedelivery.map((n) => n.id).sort()).toEqual([published.id, first.id].sort())
      // Past the retention its inbox record (and outbox row) are purged; the same message again is still one.
      await new Promise((resolve) => setTimeout(resolve, RETENTION_MS * 4))
      await orders((c) => c.republish(published))
      const second = await marker()
      const items = await settled(ada, 3)
      expect(items.map((n) => n.id).sort()).toEqual([published.id, first.id, second.id].sort())
      expect(items.filter((n) => n.kind === "order_confirmed")).toHaveLength(1)
    })

    it("lists the caller's own, newest first, a page at a time, every one once", async () => {
      const ada = customer()
      for (let i = 0; i < 5; i++) {
        await orders((c) => c.emit({ orderId: crypto.randomUUID(), customerId: ada.id, outcome: "CONFIRMED" }))
      }
      const all = await settled(ada, 5)
      expect(all).toHaveLength(5)
      const pages: Array<ReadonlyArray<Notification>> = []
      let cursor: string | undefined
      do {
        const page = await as(ada)(list({ limit: 2, ...(cursor === undefined ? {} : { cursor }) }))
        pages.push(page.items)
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
      expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
      const walked = pages.flat()
      expect(walked.map((n) => n.id)).toEqual(all.map((n) => n.id))
      const times = walked.map((n) => n.createdAt.epochMillis)
      expect(times).toEqual([...times].sort((a, b) => b - a))
    })

    it("pages through notifications recorded within one millisecond, every one once, at every page size", async () => {
      const ada = customer()
      for (let i = 0; i < 4; i++) {
        await orders((c) => c.emit({ orderId: crypto.randomUUID(), customerId: ada.id, outcome: "CONFIRMED" }))
      }
      const recorded = await settled(ada, 4)
      await run(TestHost.crowdCreatedAt("notifications", "notifications", recorded.map((n) => n.id)))
      for (let limit = 1; limit <= 4; limit++) {
        const walked: Array<string> = []
        let cursor: string | undefined
        do {
          const page = await as(ada)(list({ limit, ...(cursor === undefined ? {} : { cursor }) }))
          walked.push(...page.items.map((n) => n.id))
          cursor = page.nextCursor ?? undefined
        } while (cursor !== undefined)
        expect(walked, `limit ${limit}`).toEqual(recorded.map((n) => n.id))
      }
    })

    it("refuses a cursor it did not hand out, and anyone unidentified", async () => {
      const refused = await run(Effect.exit(Caller.withCaller(customer())(list({ cursor: "not-a-cursor" }))))
      expect(Exit.isFailure(refused) && refused.cause._tag === "Fail" && refused.cause.error).toBeInstanceOf(NotificationCursorInvalid)
      const anonymous = await run(Effect.exit(Caller.anonymous(list())))
      expect(Exit.isFailure(anonymous) && anonymous.cause._tag === "Fail" && anonymous.cause.error).toBeInstanceOf(Caller.Unauthenticated)
    })
  }
)
