/** Notifications' declaration for the runtime; imported only by the composition root. */
import * as Module from "../../runtime/Module.ts"
import { NotificationsClient } from "./NotificationsApi.ts"
import { NotificationsHttp, NotificationsHttpLive } from "./NotificationsHttp.ts"
import { subscriptions } from "./internal/Notifications.ts"
import { NotificationsHandlers } from "./internal/NotificationsHandlers.ts"

export const NotificationsModule = Module.make({
  client: NotificationsClient,
  handlers: NotificationsHandlers,
  subscribes: subscriptions,
  http: { group: NotificationsHttp, layer: NotificationsHttpLive }
})
