/**
 * The remote client of a module hosted by a peer: @effect/rpc over one WebSocket to
 * `ws://peer/rpc/<module>`, msgpack frames. The transport is chosen here and only here: a faster
 * module-to-module lane replaces this file without touching any module.
 *
 * A peer that is down fails calls at once with an `RpcClientError` (never a hang) while the
 * socket reconnects in the background; calls succeed again as soon as the peer is back.
 */
import { Socket } from "@effect/platform"
import { NodeSocket } from "@effect/platform-node"
import { type Rpc, RpcClient, type RpcClientError, type RpcGroup, RpcSerialization } from "@effect/rpc"
import { Effect, Layer, Schedule } from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as Calls from "./Calls.ts"

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
  options: { readonly tracing?: boolean } = {}
) =>
  Effect.gen(function*() {
    // Layer.build ties the socket to the caller's scope (Effect.provide would close it at once).
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolSocket({
        retryTransientErrors: false,
        retrySchedule: Schedule.exponential("100 millis", 1.5).pipe(Schedule.union(Schedule.spaced("2 seconds")))
      }).pipe(
        Layer.provide(
          Layer.scoped(Socket.Socket, Socket.makeWebSocket(endpoint(peer, module), { openTimeout: "3 seconds" })).pipe(
            Layer.provide(NodeSocket.layerWebSocketConstructor)
          )
        ),
        Layer.provide(RpcSerialization.layerMsgPack)
      )
    )
    const client = yield* RpcClient.make(group, {
      spanPrefix: module,
      spanAttributes: { [MODULE_ATTRIBUTE]: module },
      disableTracing: options.tracing === false
    }).pipe(Effect.provide(protocol))
    return guarded(module, client as unknown as Record<string, unknown>) as RpcClient.RpcClient<
      Rpcs,
      RpcClientError.RpcClientError
    >
  })

/** Puts `Calls.guard` in front of every method. */
const guarded = (module: string, client: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [tag, method] of Object.entries(client)) {
    out[tag] = typeof method === "function"
      ? (...args: Array<unknown>) => Effect.zipRight(Calls.guard(`${module}.${tag}`), Effect.suspend(() => method(...args)))
      : guarded(`${module}.${tag}`, method as Record<string, unknown>)
  }
  return out
}
