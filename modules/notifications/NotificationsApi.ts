/**
 * The notifications contract: the messages Tessera would send a customer about their orders
 * (confirmed, cancelled with why, shipment created with its tracking number), recorded from
 * other modules' events, and read by the customer, newest first.
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ModuleClient } from "../../runtime/Module.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

/** What a notification is about: the event it was made from. */
export const NotificationKind = Schema.Literal("order_confirmed", "order_cancelled", "shipment_created")
export type NotificationKind = typeof NotificationKind.Type

/** A message for a customer, as it would be sent; `id` is the id of the event it was made from. */
export class Notification extends Schema.Class<Notification>("notifications/Notification")({
  id: Schema.String,
  kind: NotificationKind,
  orderId: Schema.String,
  subject: Schema.String,
  body: Schema.String,
  createdAt: Schema.DateTimeUtc
}) {}

/** A listing of the caller's notifications, newest first; keyset paging by `cursor`. */
export const NotificationQuery = Schema.Struct({
  limit: Schema.optionalWith(Integer.between(1, 100), { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 200 }), { exact: true })
})
export type NotificationQuery = typeof NotificationQuery.Type

/** One page of notifications, newest first; `nextCursor` is null on the last page. */
export class NotificationPage extends Schema.Class<NotificationPage>("notifications/NotificationPage")({
  items: Schema.Array(Notification),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

/** The paging cursor was not one this API handed out. */
export class NotificationCursorInvalid extends Schema.TaggedError<NotificationCursorInvalid>()(
  "NotificationCursorInvalid",
  { cursor: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return "the cursor is not one this API returned"
  }
}

export class NotificationsRpcs extends RpcGroup.make(
  /** Lists the calling user's (or API key's) own notifications, newest first; anyone unidentified: Unauthenticated. */
  Rpc.make("list", {
    payload: NotificationQuery,
    success: NotificationPage,
    error: Schema.Union(NotificationCursorInvalid, Unauthenticated)
  }).annotate(Idempotent, true)
) {}

export class NotificationsClient extends ModuleClient("notifications", NotificationsRpcs)<NotificationsClient>() {}
