/**
 * Notifications' use cases: each event of another module it subscribes to becomes one message for
 * the order's customer (recorded, and logged, as the message it would send), and the customer
 * reads theirs.
 */
import { Effect, Option } from "effect"
import * as Event from "../../../runtime/messaging/Event.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"
import * as Text from "../../../runtime/schema/Text.ts"
import type { Caller } from "../../../runtime/security/Caller.ts"
import { OrderCancelled, OrderConfirmed } from "../../orders/index.ts"
import { ShipmentCreated } from "../../shipping/index.ts"
import { NotificationCursorInvalid, NotificationPage, type NotificationQuery } from "../NotificationsApi.ts"
import * as Messages from "./Messages.ts"
import { insert, NotificationsRepo } from "./NotificationsRepo.ts"

export const DEFAULT_PAGE_SIZE = 20

/**
 * Records `message` for its customer, keyed by the event's id (so the same event twice is one
 * message, even past the inbox), and logs it once, as sending it would.
 */
const record = (message: Messages.Message, delivery: Event.Delivery) =>
  Effect.gen(function*() {
    if (!(yield* insert(delivery.messageId, message))) return
    yield* Effect.logInfo(`notification for ${message.customerId}: ${message.subject}`).pipe(
      Effect.annotateLogs({
        notification: delivery.messageId,
        kind: message.kind,
        customerId: message.customerId,
        orderId: message.orderId,
        body: message.body
      })
    )
  }).pipe(Effect.withSpan("Notifications.record", { attributes: { "tessera.notification.kind": message.kind } }))

/** What notifications does with the events it subscribes to. */
export const subscriptions = [
  Event.on(OrderConfirmed, (event, delivery) => record(Messages.orderConfirmed(event), delivery)),
  Event.on(OrderCancelled, (event, delivery) => record(Messages.orderCancelled(event), delivery)),
  Event.on(ShipmentCreated, (event, delivery) => record(Messages.shipmentCreated(event), delivery))
]

export class Notifications extends Effect.Service<Notifications>()("notifications/Notifications", {
  effect: Effect.gen(function*() {
    const repo = yield* NotificationsRepo

    /** The caller's own notifications, newest first, a page at a time. */
    const list = Effect.fn("Notifications.list")(function*(caller: Caller, query: NotificationQuery) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE
      const cursor = query.cursor
      const before = cursor === undefined ? undefined : yield* Option.match(Cursor.decode(cursor), {
        onNone: () => Effect.fail(new NotificationCursorInvalid({ cursor: Text.quote(cursor) })),
        onSome: Effect.succeed
      })
      // One row more than the page tells whether another page follows.
      const rows = yield* repo.list(caller.id, before, limit + 1)
      return new NotificationPage(Cursor.page(rows, limit))
    })

    return { list } as const
  }),
  dependencies: [NotificationsRepo.Default]
}) {}
