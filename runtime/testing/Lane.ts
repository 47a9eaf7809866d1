/**
 * Test support for the module-to-module lane: serves a module's handlers at `/rpc/<module>` on an
 * ephemeral port (RpcEndpoint.ts), as a process would, and builds the in-process and remote
 * clients of a contract, so that one test can run the same calls over both paths.
 */
import { HttpApi, HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { Rpc, RpcClient, RpcGroup } from "@effect/rpc"
import { Context, type Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { createServer } from "node:http"
import type { CallError } from "../transport/CallError.ts"
import type * as Client from "../transport/Client.ts"
import * as LocalClient from "../transport/LocalClient.ts"
import * as RemoteClient from "../transport/RemoteClient.ts"
import * as RpcEndpoint from "../transport/RpcEndpoint.ts"

export const secret = Redacted.make("a-lane-test-secret-long-enough-123456")

export interface Served {
  readonly url: string
  readonly close: () => Promise<void>
}

/** Serves `handlers` of `module` on an ephemeral port until `close`. */
export const serve = async <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Layer.Layer<Rpc.ToHandler<Rpcs>>,
  options: {
    readonly heartbeatTimeout?: Duration.DurationInput
    readonly maxInFlight?: number
    /** Where to listen (default 127.0.0.1, any free port): two instances may share a port on two loopback addresses. */
    readonly host?: string
    readonly port?: number
  } = {}
): Promise<Served> => {
  const { host = "127.0.0.1", port = 0, ...endpoint } = options
  const scope = await Effect.runPromise(Scope.make())
  const layer = HttpApiBuilder.serve().pipe(
    Layer.provide(
      Layer.unwrapScoped(Effect.map(Layer.build(handlers), (context) => RpcEndpoint.layer(module, group, context, { secret, ...endpoint })))
    ),
    Layer.provide(HttpApiBuilder.api(HttpApi.make("lane-test"))),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port, host }))
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
  return { url: `http://${host}:${address.port}`, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** The in-process client of `module` over `handlers` (built in `scope`). */
export const local = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Layer.Layer<Rpc.ToHandler<Rpcs>>,
  scope: Scope.Scope,
  interceptors?: ReadonlyArray<Client.Interceptor>
): Promise<RpcClient.RpcClient<Rpcs, CallError>> =>
  Effect.runPromise(
    Effect.map(Layer.buildWithScope(handlers, scope), (context) =>
      LocalClient.make(module, group, context, interceptors ? { interceptors } : {}))
  )

/** The remote client of `module` served at `url` (closed with `scope`). */
export const remote = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  url: string,
  scope: Scope.Scope,
  options: Partial<RemoteClient.Options> = {}
): Promise<RpcClient.RpcClient<Rpcs, CallError>> =>
  Effect.runPromise(
    RemoteClient.make(module, group, url, { secret, caller: "tests", ...options }).pipe(Scope.extend(scope))
  )
