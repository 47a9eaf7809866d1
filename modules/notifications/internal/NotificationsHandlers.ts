/** Implements the notifications contract: each call on behalf of its caller, who must be someone. */
import { Effect, Layer } from "effect"
import * as Caller from "../../../runtime/security/Caller.ts"
import { NotificationsRpcs } from "../NotificationsApi.ts"
import { Notifications } from "./Notifications.ts"

export const NotificationsHandlers = NotificationsRpcs.toLayer(
  Effect.gen(function*() {
    const notifications = yield* Notifications
    return {
      list: (query, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => notifications.list(caller, query))
    }
  })
).pipe(Layer.provide(Notifications.Default))
