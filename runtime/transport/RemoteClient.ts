/**
 * The remote client of a module hosted by a peer: @effect/rpc over one WebSocket to
 * `ws://peer/rpc/<module>`, msgpack frames. The transport is chosen here and only here: a faster
 * module-to-module lane replaces this file without touching any module.
 *
 * A peer that is down fails calls at once with an `RpcClientError` (never a hang) while the
 * socket reconnects in the background; calls succeed again as soon as the peer is back.
 *
 * Every call carries this process's service credential for the module (ServiceCredential.ts) and
 * the caller it is made for (Caller.ts, from `RpcClient.currentHeaders`). A peer that refuses the
 * credential fails the call with an `RpcClientError` naming why: to the calling code it is a
 * module it cannot reach, as it is.
 */
import { Socket } from "@effect/platform"
import { NodeSocket } from "@effect/platform-node"
import { type Rpc, RpcClient, RpcClientError, type RpcGroup, RpcSerialization } from "@effect/rpc"
import { Deferred, Effect, Exit, Layer, Schedule } from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import * as Calls from "./Calls.ts"

const OPEN_TIMEOUT = "3 seconds"

/** `http://host:port` → `ws://host:port/rpc/<module>` (https → wss). */
export const endpoint = (peer: string, module: string): string => {
  const url = new URL(peer)
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/rpc/${module}`
  return url.toString()
}

export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  peer: string,
  options: {
    readonly secret: ServiceCredential.Secret
    /** Who is calling: the calling process's modules, as the credential's subject. */
    readonly caller: string
    readonly tracing?: boolean
    /** Told each time the socket to the peer opens (`true`) or closes (`false`). */
    readonly onConnection?: (open: boolean) => void
  }
) =>
  Effect.gen(function*() {
    // The socket opens in the background, and calls fail fast until it has: wait for the first
    // open (bounded), so that a process whose peers are up answers its first requests.
    const opened = yield* Deferred.make<void>()
    const watched = Layer.effect(
      Socket.WebSocketConstructor,
      Effect.map(Socket.WebSocketConstructor, (construct) => (url: string, protocols?: string | Array<string>) => {
        const socket = construct(url, protocols)
        socket.addEventListener("open", () => {
          options.onConnection?.(true)
          Deferred.unsafeDone(opened, Exit.void)
        })
        socket.addEventListener("close", () => options.onConnection?.(false))
        return socket
      })
    ).pipe(Layer.provide(NodeSocket.layerWebSocketConstructor))
    // Layer.build ties the socket to the caller's scope (Effect.provide would close it at once).
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolSocket({
        retryTransientErrors: false,
        retrySchedule: Schedule.exponential("100 millis", 1.5).pipe(Schedule.union(Schedule.spaced("2 seconds")))
      }).pipe(
        Layer.provide(
          Layer.scoped(Socket.Socket, Socket.makeWebSocket(endpoint(peer, module), { openTimeout: OPEN_TIMEOUT })).pipe(
            Layer.provide(watched)
          )
        ),
        Layer.provide(RpcSerialization.layerMsgPack)
      )
    )
    yield* Deferred.await(opened).pipe(
      Effect.timeout(OPEN_TIMEOUT),
      Effect.catchAll(() => Effect.logWarning(`${module} at ${peer} is not reachable yet; calls fail until it is`))
    )
    const credential = yield* Layer.build(ServiceCredential.client(options.secret, options.caller, module))
    const client = yield* RpcClient.make(group.middleware(ServiceCredential.ServiceAuth), {
      spanPrefix: module,
      spanAttributes: { [MODULE_ATTRIBUTE]: module },
      disableTracing: options.tracing === false
    }).pipe(Effect.provide(protocol), Effect.provide(credential))
    return guarded(module, client as unknown as Record<string, unknown>) as RpcClient.RpcClient<
      Rpcs,
      RpcClientError.RpcClientError
    >
  })

/** A refused credential, as the transport failure it is to the calling code. */
const unreachable = (error: ServiceCredential.ServiceCredentialRefused) =>
  Effect.zipRight(
    Effect.logError(error.message),
    Effect.fail(new RpcClientError.RpcClientError({ reason: "Protocol", message: error.message }))
  )

/** Puts `Calls.guard` in front of every method, and turns a refused credential into an RpcClientError. */
const guarded = (module: string, client: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [tag, method] of Object.entries(client)) {
    out[tag] = typeof method === "function"
      ? (...args: Array<unknown>) =>
        Effect.zipRight(Calls.guard(`${module}.${tag}`), Effect.suspend(() => method(...args))).pipe(
          Effect.catchIf(ServiceCredential.isRefused, unreachable)
        )
      : guarded(`${module}.${tag}`, method as Record<string, unknown>)
  }
  return out
}
