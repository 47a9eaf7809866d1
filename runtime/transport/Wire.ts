/**
 * The wire of the module-to-module lane: what RemoteClient and RpcEndpoint say to each other.
 *
 * A connection is a WebSocket to `/rpc/<module>` speaking the subprotocol `tessera-rpc.1`. The
 * calling process presents its service credential in the upgrade request (ServiceCredential.ts),
 * so a connection is open only once the module has accepted it. Each WebSocket message is a JSON
 * array of frames:
 *
 *   caller → module   {i, t, p, h?, s?, d?}
 *                                        call rpc `t` with the encoded payload `p`; `h` the call's
 *                                        headers, `s` the calling span: [traceId, spanId, sampled],
 *                                        `d` the milliseconds left before the call's deadline
 *                                        (Deadline.ts; an integer, 0 to 2^31 - 1): the module
 *                                        interrupts the handler when they have passed
 *                     {i, x: 1}          interrupt call `i`
 *                     {c}                a renewed service credential for this connection
 *   module → caller   {i, v}             call `i` succeeded with the encoded value `v`
 *                     {i, e}             call `i` failed with the encoded Cause `e` (typed errors
 *                                        of the contract, defects, interruption)
 *                     {i, u, k?}         call `i` was not run, or (k "Deadline") was given up when
 *                                        its deadline passed, for the reason `u`; `k` says which,
 *                                        as a CallError reason: "ShuttingDown", "Overloaded" (too
 *                                        many calls in flight), "Refused" (the connection's
 *                                        credential expired), "Deadline"
 *
 * The caller pings the connection (WebSocket pings, every TESSERA_RPC_HEARTBEAT_INTERVAL; the
 * module's end answers them by itself), and either end closes a connection from which nothing
 * has come for TESSERA_RPC_HEARTBEAT_TIMEOUT: a frozen or partitioned peer is noticed within
 * seconds, not when TCP gives up.
 *
 * Payloads, values and errors are encoded and decoded with the contract's own Schemas, at both
 * ends, as @effect/rpc does; a `CallError` a handler died with crosses as itself, so the edge
 * answers it by its kind wherever it happened. Written by hand rather than using @effect/rpc's protocol because
 * that protocol's per-call machinery (a runtime and several fibers forked per request) caps a
 * process near 25k calls/s per core, while this lane runs each call with one fiber at the callee
 * and one `Effect.async` at the caller (../shared/FACTS.md; `npm run bench` measures it).
 */
import { type Rpc, type RpcGroup, RpcSchema } from "@effect/rpc"
import { Cause, Config, type Either, Option, ParseResult, Predicate, Redacted, Schema } from "effect"
import { Buffer } from "node:buffer"
import { setImmediate } from "node:timers"
import * as Settings from "../Settings.ts"
import { CallError } from "./CallError.ts"

export const PROTOCOL = "tessera-rpc.1"

/** RFC 6455 close codes the lane uses. */
export const CLOSE_GOING_AWAY = 1001
/** The peer sent something this protocol does not allow (not JSON frames, a malformed frame). */
export const CLOSE_PROTOCOL_ERROR = 1002
/** The peer sent a binary message: the lane speaks text. */
export const CLOSE_UNSUPPORTED_DATA = 1003
/** The peer sent a message larger than `TESSERA_RPC_MAX_FRAME_BYTES` (ws closes with it). */
export const CLOSE_TOO_BIG = 1009
/** This end could not handle what the peer sent, for a reason of its own. */
export const CLOSE_INTERNAL_ERROR = 1011

/**
 * The largest WebSocket message either end accepts (`TESSERA_RPC_MAX_FRAME_BYTES`), and the
 * largest either end sends: a larger message closes the connection (1009) before it is read
 * whole. The default carries this build's largest answer with room to spare (a page of 100
 * products whose 4,000-character descriptions are all escapes is about 2.5 MB); the same in every
 * process of a deployment.
 */
export const DEFAULT_MAX_FRAME_BYTES = Settings.DEFAULT_MAX_FRAME_BYTES
export const MIN_MAX_FRAME_BYTES = Settings.MIN_MAX_FRAME_BYTES

export const maxFrameBytesFromConfig: Config.Config<number> = Settings.rpcMaxFrameBytes.config

export interface CallFrame {
  readonly i: number
  readonly t: string
  readonly p: unknown
  readonly h?: Record<string, string>
  readonly s?: readonly [traceId: string, spanId: string, sampled: boolean]
  readonly d?: number
}

export interface ReplyFrame {
  readonly i: number
  readonly v?: unknown
  readonly e?: unknown
  readonly u?: string
  readonly k?: NotRunReason
}

/** Why a module did not run a call, or gave it up (`k` of a reply). */
export type NotRunReason = "ShuttingDown" | "Overloaded" | "Refused" | "Deadline"

/** The largest `d`: timers hold at most 2^31 - 1 ms; a deadline further away is sent as this. */
export const MAX_DEADLINE_MS = 2 ** 31 - 1

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
    // A CallError defect first: it crosses as itself (Problem.ts answers it by its kind).
    const cause = Schema.Cause({ error: rpc.errorSchema as AnySchema, defect: Schema.Union(CallError, rpc.defectSchema as AnySchema) })
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

/** How much of a value a message quotes, and how long a message about a call may be. */
const PREVIEW_CHARS = 64
const MESSAGE_CHARS = 600

const cut = (text: string, chars: number) => (text.length > chars ? `${text.slice(0, chars)}…` : text)

/** `text`, cut to a few hundred characters: for what a peer says about a call. */
export const short = (text: string): string => cut(text, MESSAGE_CHARS)

/** A defect as the wire carries it, for a call the contract's Schemas cannot describe. */
const defectCause = Schema.encodeSync(Schema.Cause({ error: Schema.Never, defect: Schema.Defect }))

/** The frame failing call `id` with a defect whose message is `message` (cut to a few hundred characters). */
export const defect = (id: number, message: string): string =>
  JSON.stringify({ i: id, e: defectCause(Cause.die(new Error(cut(message, MESSAGE_CHARS)))) })

/** The frame of a reply: `fields` as JSON, or a defect when they cannot be (a cycle, a bigint). */
export const reply = (id: number, fields: { readonly v: unknown } | { readonly e: unknown }, name: string): string => {
  try {
    return JSON.stringify({ i: id, ...fields })
  } catch (error) {
    return defect(id, `${name} answered what JSON cannot carry: ${error instanceof Error ? error.message : String(error)}`)
  }
}

/**
 * A short, bounded rendering of any value, for messages: at most two levels deep, three items
 * or keys per level, 64 characters in all. A value is never quoted whole (Effect's formatters
 * would render it recursively: a peer's value nested 5,000 deep overflows the stack).
 */
export const preview = (value: unknown): string => cut(render(value, 2), PREVIEW_CHARS)

const render = (value: unknown, depth: number): string => {
  if (typeof value === "string") return JSON.stringify(cut(value, PREVIEW_CHARS))
  if (typeof value === "bigint") return `${value}n`
  if (typeof value !== "object" || value === null) return typeof value === "function" ? "function" : String(value)
  if (Redacted.isRedacted(value)) return "<redacted>"
  if (Predicate.isDate(value)) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString()
  if (depth === 0) return Array.isArray(value) ? "[…]" : "{…}"
  if (Array.isArray(value)) {
    const items = value.slice(0, 3).map((item) => render(item, depth - 1))
    return `[${items.join(",")}${value.length > 3 ? ",…" : ""}]`
  }
  const entries: Array<string> = []
  for (const key in value) {
    if (entries.length === 3) {
      entries.push("…")
      break
    }
    entries.push(`${JSON.stringify(cut(key, PREVIEW_CHARS))}:${render((value as Record<string, unknown>)[key], depth - 1)}`)
  }
  return `{${entries.join(",")}}`
}

/** Stands for a value in a ParseIssue given to Effect's formatter, which renders it as `text`. */
class Preview {
  constructor(readonly text: string) {}
  toString() {
    return this.text
  }
}

const key = (k: PropertyKey) => (typeof k === "string" ? cut(k, PREVIEW_CHARS) : k)

/** `issue` with every value it carries replaced by its bounded preview. */
const bounded = (issue: ParseResult.ParseIssue, depth: number): ParseResult.ParseIssue => {
  if (depth > 32) throw new RangeError("issue too deep to describe")
  const actual = new Preview(preview(issue.actual))
  switch (issue._tag) {
    case "Type":
      return new ParseResult.Type(issue.ast, actual, issue.message && cut(issue.message, MESSAGE_CHARS))
    case "Forbidden":
      return new ParseResult.Forbidden(issue.ast, actual, issue.message && cut(issue.message, MESSAGE_CHARS))
    case "Unexpected":
      return new ParseResult.Unexpected(actual, issue.message)
    case "Missing":
      return issue
    case "Pointer":
      return new ParseResult.Pointer(
        Array.isArray(issue.path) ? (issue.path.map(key) as unknown as ParseResult.Path) : key(issue.path as PropertyKey),
        actual,
        bounded(issue.issue, depth + 1)
      )
    case "Refinement":
      return new ParseResult.Refinement(issue.ast, actual, issue.kind, bounded(issue.issue, depth + 1))
    case "Transformation":
      return new ParseResult.Transformation(issue.ast, actual, issue.kind, bounded(issue.issue, depth + 1))
    case "Composite": {
      const issues = Array.isArray(issue.issues)
        ? issue.issues.slice(0, 3).map((i) => bounded(i, depth + 1))
        : bounded(issue.issues as ParseResult.ParseIssue, depth + 1)
      return new ParseResult.Composite(issue.ast, actual, issues as ParseResult.SingleOrNonEmpty<ParseResult.ParseIssue>)
    }
  }
}

/**
 * What did not match a contract, for a message: Effect's tree of issues, with every value it
 * quotes bounded (`preview`) and the whole cut to a few hundred characters. Never throws.
 */
export const formatted = (error: ParseResult.ParseError): string => formattedIssue(error.issue)

/** `formatted`, for an issue (in process, `LocalClient` checks values against the contract too). */
export const formattedIssue = (issue: ParseResult.ParseIssue): string => {
  try {
    return cut(ParseResult.TreeFormatter.formatIssueSync(bounded(issue, 0)), MESSAGE_CHARS)
  } catch {
    return "(the mismatch is too large to describe)"
  }
}

/**
 * Writes frames to a socket: the first frame of an event-loop turn at once, the rest of that turn
 * as one message when it ends. A lone call pays no delay; a burst of calls or replies pays one
 * write (one syscall) instead of one per frame. No message exceeds `maxBytes`: a burst goes out
 * in several, and a frame that alone would exceed it is not sent (`false`).
 */
export const sender = (write: (message: string) => void, maxBytes: number) => {
  // A string of n UTF-16 units is at most 3n bytes of UTF-8: counting units is enough, and cheap.
  const batchUnits = Math.floor(maxBytes / 3) - 2
  let batch: Array<string> | undefined
  let units = 0
  const flush = () => {
    const frames = batch!
    batch = undefined
    if (frames.length > 0) write(`[${frames.join(",")}]`)
  }
  return (frame: string): boolean => {
    const large = frame.length > batchUnits
    if (large && Buffer.byteLength(frame) > maxBytes - 2) return false
    if (batch === undefined) {
      write(`[${frame}]`)
      batch = []
      units = 0
      setImmediate(flush)
    } else if (large || units + frame.length + 1 > batchUnits) {
      if (batch.length > 0) write(`[${batch.join(",")}]`)
      batch.length = 0
      units = 0
      if (large) write(`[${frame}]`)
      else {
        batch.push(frame)
        units = frame.length + 1
      }
    } else {
      batch.push(frame)
      units += frame.length + 1
    }
    return true
  }
}

/** Whether a call's `h` is absent or a record of strings. */
export const isStrings = (h: unknown): boolean =>
  h === undefined || (typeof h === "object" && h !== null && !Array.isArray(h) && Object.values(h).every((v) => typeof v === "string"))

/** Whether a call's `d` is absent or an integer from 0 to MAX_DEADLINE_MS. */
export const isDeadline = (d: unknown): boolean =>
  d === undefined || (Number.isSafeInteger(d) && (d as number) >= 0 && (d as number) <= MAX_DEADLINE_MS)

/** Whether a reply's `k` is absent or a reason this protocol names. */
export const isNotRunReason = (k: unknown): k is NotRunReason | undefined =>
  k === undefined || k === "ShuttingDown" || k === "Overloaded" || k === "Refused" || k === "Deadline"

/** Whether `i` can name a call: a non-negative safe integer. */
export const isId = (i: unknown): i is number => Number.isSafeInteger(i) && (i as number) >= 0

const ID_CHARS = 64

/** Whether a call's `s` is absent or `[traceId, spanId, sampled]`, ids of at most 64 characters. */
export const isSpan = (s: unknown): boolean =>
  s === undefined ||
  (Array.isArray(s) && s.length === 3 && typeof s[0] === "string" && typeof s[1] === "string" && typeof s[2] === "boolean" &&
    s[0].length <= ID_CHARS && s[1].length <= ID_CHARS)

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
