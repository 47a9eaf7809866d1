/**
 * The wire of the module-to-module lane: what RemoteClient and RpcEndpoint say to each other.
 *
 * A connection is a WebSocket to `/rpc/<module>` speaking the subprotocol `tessera-rpc.1`. The
 * calling process presents its service credential in the upgrade request (ServiceCredential.ts),
 * so a connection is open only once the module has accepted it. Each WebSocket message is a JSON
 * array of frames:
 *
 *   caller → module   {i, t, p, h?, s?}  call rpc `t` with the encoded payload `p`; `h` the call's
 *                                        headers, `s` the calling span: [traceId, spanId, sampled]
 *                     {i, x: 1}          interrupt call `i`
 *                     {c}                a renewed service credential for this connection
 *   module → caller   {i, v}             call `i` succeeded with the encoded value `v`
 *                     {i, e}             call `i` failed with the encoded Cause `e` (typed errors
 *                                        of the contract, defects, interruption)
 *                     {i, u}             call `i` was not run, for the reason `u` (the module is
 *                                        shutting down, the connection's credential expired)
 *
 * Payloads, values and errors are encoded and decoded with the contract's own Schemas, at both
 * ends, as @effect/rpc does. Written by hand rather than using @effect/rpc's protocol because
 * that protocol's per-call machinery (a runtime and several fibers forked per request) caps a
 * process near 25k calls/s per core, while this lane runs each call with one fiber at the callee
 * and one `Effect.async` at the caller (../shared/FACTS.md; `npm run bench` measures it).
 */
import { type Rpc, type RpcGroup, RpcSchema } from "@effect/rpc"
import { Cause, type Either, Option, ParseResult, Schema } from "effect"

export const PROTOCOL = "tessera-rpc.1"

/** Close codes beyond RFC 6455's: the peer sent something this protocol does not allow. */
export const CLOSE_PROTOCOL_ERROR = 1002
export const CLOSE_GOING_AWAY = 1001

export interface CallFrame {
  readonly i: number
  readonly t: string
  readonly p: unknown
  readonly h?: Record<string, string>
  readonly s?: readonly [traceId: string, spanId: string, sampled: boolean]
}

export interface ReplyFrame {
  readonly i: number
  readonly v?: unknown
  readonly e?: unknown
  readonly u?: string
}

type Encode = (value: unknown) => Either.Either<unknown, ParseResult.ParseError>

/** One rpc's Schemas, ready to encode and decode at either end. */
export interface Codec {
  readonly rpc: Rpc.AnyWithProps
  readonly encodePayload: Encode
  readonly decodePayload: Encode
  readonly encodeSuccess: Encode
  readonly decodeSuccess: Encode
  readonly encodeCause: (cause: Cause.Cause<unknown>) => Either.Either<unknown, ParseResult.ParseError>
  readonly decodeCause: (encoded: unknown) => Either.Either<Cause.Cause<unknown>, ParseResult.ParseError>
}

type AnySchema = Schema.Schema<any, any, never>

/** The codecs of every rpc of `group`, by tag. */
export const codecs = (group: RpcGroup.RpcGroup<any>): ReadonlyMap<string, Codec> => {
  const out = new Map<string, Codec>()
  for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
    if (Option.isSome(RpcSchema.getStreamSchemas(rpc.successSchema.ast))) {
      throw new Error(`${rpc._tag} streams its result: module calls do not stream (yet)`)
    }
    const cause = Schema.Cause({ error: rpc.errorSchema as AnySchema, defect: rpc.defectSchema as AnySchema })
    out.set(rpc._tag, {
      rpc,
      encodePayload: Schema.encodeUnknownEither(rpc.payloadSchema as AnySchema),
      decodePayload: Schema.decodeUnknownEither(rpc.payloadSchema as AnySchema),
      encodeSuccess: Schema.encodeUnknownEither(rpc.successSchema as AnySchema),
      decodeSuccess: Schema.decodeUnknownEither(rpc.successSchema as AnySchema),
      encodeCause: Schema.encodeUnknownEither(cause),
      decodeCause: Schema.decodeUnknownEither(cause)
    })
  }
  return out
}

/** A defect as the wire carries it, for a call the contract's Schemas cannot describe. */
const defectCause = Schema.encodeSync(Schema.Cause({ error: Schema.Never, defect: Schema.Defect }))

/** The frame failing call `id` with a defect whose message is `message`. */
export const defect = (id: number, message: string): string =>
  JSON.stringify({ i: id, e: defectCause(Cause.die(new Error(message))) })

/** The frame of a reply: `fields` as JSON, or a defect when they cannot be (a cycle, a bigint). */
export const reply = (id: number, fields: { readonly v: unknown } | { readonly e: unknown }, name: string): string => {
  try {
    return JSON.stringify({ i: id, ...fields })
  } catch (error) {
    return defect(id, `${name} answered what JSON cannot carry: ${error instanceof Error ? error.message : String(error)}`)
  }
}

export const formatted = (error: ParseResult.ParseError) => ParseResult.TreeFormatter.formatErrorSync(error)

/**
 * Writes frames to a socket: the first frame of an event-loop turn at once, the rest of that turn
 * as one message when it ends. A lone call pays no delay; a burst of calls or replies pays one
 * write (one syscall) instead of one per frame.
 */
export const sender = (write: (message: string) => void) => {
  let batch: Array<string> | undefined
  const flush = () => {
    const frames = batch!
    batch = undefined
    if (frames.length > 0) write(`[${frames.join(",")}]`)
  }
  return (frame: string) => {
    if (batch !== undefined) return void batch.push(frame)
    write(`[${frame}]`)
    batch = []
    setImmediate(flush)
  }
}

/** Whether a call's `h` is absent or a record of strings. */
export const isStrings = (h: unknown): boolean =>
  h === undefined || (typeof h === "object" && h !== null && !Array.isArray(h) && Object.values(h).every((v) => typeof v === "string"))

/** Whether a call's `s` is absent or `[traceId, spanId, sampled]`. */
export const isSpan = (s: unknown): boolean =>
  s === undefined ||
  (Array.isArray(s) && s.length === 3 && typeof s[0] === "string" && typeof s[1] === "string" && typeof s[2] === "boolean")

/** The frames of one message, or `undefined` when it is not a JSON array of objects. */
export const frames = (message: string): ReadonlyArray<Record<string, unknown>> | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(message)
  } catch {
    return undefined
  }
  if (!Array.isArray(parsed)) return undefined
  for (const frame of parsed) if (typeof frame !== "object" || frame === null) return undefined
  return parsed as ReadonlyArray<Record<string, unknown>>
}
