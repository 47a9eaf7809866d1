/**
 * Notifications' public REST route, implemented by calling its client: it works wherever the
 * module runs. The caller the gateway authenticated travels with the call.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiError, HttpApiGroup, OpenApi } from "@effect/platform"
import { Effect, Schema } from "effect"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import * as Integer from "../../runtime/schema/Integer.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { type NotificationCursorInvalid, NotificationPage, NotificationsClient } from "./NotificationsApi.ts"

const NotificationSearch = Schema.Struct({
  limit: Schema.optionalWith(Integer.pageSize, { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 200 }), { exact: true })
}).annotations({ parseOptions: { errors: "all" } })

export class NotificationsHttp extends HttpApiGroup.make("notifications")
  .add(
    HttpApiEndpoint.get("list", "/v1/me/notifications")
      .setUrlParams(NotificationSearch)
      .addSuccess(NotificationPage)
      .middleware(Auth.Authenticated)
      .annotate(
        OpenApi.Summary,
        "The messages sent to you about your orders (confirmed, cancelled and why, shipment with its tracking number), newest first, a page at a time"
      )
  )
{}

/** A cursor this API did not hand out is a bad query parameter: a validation problem naming it. */
const invalidCursor = (error: NotificationCursorInvalid) =>
  Effect.fail(
    new HttpApiError.HttpApiDecodeError({
      issues: [{ _tag: "Type", path: ["cursor"], message: error.message }],
      message: `cursor: ${error.message}`
    })
  )

export const NotificationsHttpLive = HttpApiBuilder.group(
  HttpApi.make(Gateway.API_ID).add(NotificationsHttp),
  "notifications",
  (handlers) =>
    Effect.gen(function*() {
      const notifications = yield* NotificationsClient
      return handlers.handle("list", ({ urlParams }) =>
        Gateway.orUnavailable(notifications.list(urlParams)).pipe(
          Effect.catchTag("NotificationCursorInvalid", invalidCursor),
          // The route's middleware has authenticated the caller: notifications refusing it is a bug.
          Effect.catchTag("Unauthenticated", Effect.die)
        ))
    })
)
