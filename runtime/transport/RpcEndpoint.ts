/**
 * Serves a hosted module's contract to its peers at `/rpc/<module>` on the process's HTTP port:
 * @effect/rpc over WebSocket, msgpack frames. Every call must carry a valid service credential
 * for this module (ServiceCredential.ts); one without is refused before its handler runs. A
 * defect in one call fails that call only. Each call is a span `<module>.<rpc>` carrying
 * `tessera.module`, which the logger reads.
 */
import { HttpApiBuilder } from "@effect/platform"
import { type Rpc, type RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { type Context, Layer } from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"

export const path = (module: string) => `/rpc/${module}` as const

export const layer = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Context.Context<Rpc.ToHandler<Rpcs>>,
  options: { readonly secret: ServiceCredential.Secret; readonly tracing?: boolean }
) =>
  RpcServer.layer(group.middleware(ServiceCredential.ServiceAuth), {
    spanPrefix: module,
    disableTracing: options.tracing === false,
    spanAttributes: { [MODULE_ATTRIBUTE]: module },
    disableFatalDefects: true
  }).pipe(
    Layer.provide(RpcServer.layerProtocolWebsocket({ path: path(module), routerTag: HttpApiBuilder.Router })),
    Layer.provide(RpcSerialization.layerMsgPack),
    Layer.provide(Layer.succeedContext(handlers)),
    Layer.provide(Layer.succeed(ServiceCredential.ServiceAuth, ServiceCredential.server(options.secret, module)))
  )
