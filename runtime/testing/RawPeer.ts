/**
 * A peer of a module's RPC endpoint that holds a valid service credential and writes whatever it
 * likes on the socket: what hostile-peer tests send frames with, bypassing RemoteClient's checks.
 */
import type { Redacted } from "effect"
import type { Buffer } from "node:buffer"
import { WebSocket } from "ws"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import * as RemoteClient from "../transport/RemoteClient.ts"
import * as Wire from "../transport/Wire.ts"

export interface RawPeer {
  readonly ws: WebSocket
  /** The close code and reason, once the endpoint (or this peer) closed the connection. */
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>
  /** The largest message the endpoint sent this peer. */
  readonly largest: () => number
  readonly send: (message: string | Buffer) => void
  /** The reply frame to call `id`. */
  readonly reply: (id: number) => Promise<Record<string, unknown>>
}

/**
 * Opens a connection to `module` at `url` (`http://host:port`), as a peer with `secret`. Like
 * RemoteClient it pings the connection every second (the endpoint drops a silent one) unless
 * `heartbeat` is false.
 */
export const connect = async (
  url: string,
  module: string,
  secret: Redacted.Redacted<string>,
  options: { readonly heartbeat?: boolean } = {}
): Promise<RawPeer> => {
  const credential = await ServiceCredential.issuer(secret, "tests", module).current()
  const ws = new WebSocket(RemoteClient.endpoint(url, module), Wire.PROTOCOL, {
    headers: { [ServiceCredential.HEADER]: credential.token },
    maxPayload: 1 << 30
  })
  const replies = new Map<number, Record<string, unknown>>()
  const waiting = new Map<number, (frame: Record<string, unknown>) => void>()
  let size = 0
  ws.on("message", (data: Buffer) => {
    size = Math.max(size, data.length)
    for (const frame of JSON.parse(data.toString()) as Array<Record<string, unknown>>) {
      const id = frame.i as number
      replies.set(id, frame)
      waiting.get(id)?.(frame)
    }
  })
  const pinger = options.heartbeat === false
    ? undefined
    : setInterval(() => ws.readyState === WebSocket.OPEN && ws.ping(), 1_000)
  pinger?.unref()
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => {
      clearInterval(pinger)
      resolve({ code, reason: reason.toString() })
    })
  )
  ws.on("error", () => {})
  await new Promise((resolve, reject) => {
    ws.on("open", resolve)
    ws.on("unexpected-response", (_, response) => reject(new Error(`refused: ${response.statusCode}`)))
  })
  return {
    ws,
    closed,
    largest: () => size,
    send: (message) => ws.send(message),
    reply: (id) =>
      replies.has(id)
        ? Promise.resolve(replies.get(id)!)
        : new Promise<Record<string, unknown>>((resolve) => waiting.set(id, resolve))
  }
}

/** The defect message of a reply frame, or undefined when it is not a defect. */
export const defectMessage = (frame: Record<string, unknown>): string | undefined => {
  const e = frame.e as { _tag?: string; defect?: { message?: string } } | undefined
  return e?._tag === "Die" ? e.defect?.message : undefined
}

/** The JSON text of `depth` arrays nested in one another (`[[[...]]]`). */
export const nestedArrays = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

/** The JSON text of `depth` objects nested in one another (`{"a":{"a":...1}}`). */
export const nestedObjects = (depth: number) => `${"{\"a\":".repeat(depth)}1${"}".repeat(depth)}`
