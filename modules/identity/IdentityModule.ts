/** Identity's declaration for the runtime; imported only by the composition root. */
import * as Module from "../../runtime/Module.ts"
import { IdentityClient } from "./IdentityApi.ts"
import { IdentityAuthenticator } from "./IdentityAuth.ts"
import { IdentityHttp, IdentityHttpLive } from "./IdentityHttp.ts"
import { IdentityHandlers } from "./internal/IdentityHandlers.ts"
import * as IdentitySettings from "./internal/IdentitySettings.ts"

export const IdentityModule = Module.make({
  client: IdentityClient,
  handlers: IdentityHandlers,
  http: { group: IdentityHttp, layer: IdentityHttpLive, authenticator: IdentityAuthenticator },
  settings: IdentitySettings.all
})
