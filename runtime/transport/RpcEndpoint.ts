/**
 * Serves a hosted module's contract to its peers at `/rpc/<module>` on the process's HTTP port:
 * a WebSocket speaking the lane's protocol (Wire.ts).
 *
 * - A connection opens only for an upgrade that offers the subprotocol `tessera-rpc.1` (426
 *   otherwise, with `Upgrade: websocket`) and presents a valid service credential for this module
 *   (ServiceCredential.ts): anything else is answered 401 before any handler runs, with the same
 *   generic problem whatever was wrong; this process's log says what. A connection whose
 *   credential expires without being renewed gets every further call refused, not run.
 * - Nothing a peer sends can end the process. A message over `maxFrameBytes` closes that
 *   connection (1009) before it is read whole; a binary message (1003) or one that is not JSON
 *   frames (1002) closes it too. A call that cannot be checked or run (unknown rpc, a payload the
 *   contract refuses, however deep or large) fails that call only, with a defect whose message
 *   quotes the payload only in a short preview.
 * - Each call runs its handler in one fiber, in the module's own context, with the caller the call
 *   carries (Caller.ts) as the only caller its own calls carry on, under a span `<module>.<rpc>`
 *   (kind server, child of the caller's span, carrying `tessera.module`; without tracing, the
 *   caller's span is still the parent, so logs keep the trace id).
 * - A defect fails that call only. A caller that interrupts a call, or whose connection drops,
 *   interrupts its handler.
 * - A call that carries a deadline (`d`, the milliseconds its caller has left) runs its handler
 *   with that deadline (Deadline.ts: its own calls get what is left) and is given up when it
 *   passes: the handler is interrupted and the caller told so (`k` "Deadline").
 * - A connection silent for `heartbeatTimeout` (no message, no ping: callers ping every
 *   second) is closed, so that the calls of a caller that froze or was cut off do not run on
 *   for nobody.
 * - A connection may have `maxInFlight` calls running at once; more are refused, not run.
 * - On shutdown, calls still arriving are refused (not run, so a caller may retry them
 *   elsewhere), the calls in flight finish and are answered (for up to `grace`), then the
 *   connection closes with 1001.
 */
import { Headers, HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { type Rpc, RpcClient, type RpcGroup } from "@effect/rpc"
import {
  Cause,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  type Fiber,
  FiberId,
  FiberRef,
  FiberRefs,
  Layer,
  Option,
  Runtime,
  Tracer
} from "effect"
import { Buffer } from "node:buffer"
import { setImmediate } from "node:timers"
import { type WebSocket, WebSocketServer } from "ws"
import * as Problem from "../gateway/Problem.ts"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as Caller from "../security/Caller.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import * as Settings from "../Settings.ts"
import { CallError } from "./CallError.ts"
import * as Deadline from "./Deadline.ts"
import * as Wire from "./Wire.ts"

export const path = (module: string) => `/rpc/${module}` as const

/** One rpc as this endpoint runs it. */
interface Entry {
  readonly name: string
  readonly codec: Wire.Codec
  readonly handler: Rpc.Handler<string>["handler"]
  /** The handler's own module's context. */
  readonly context: Context.Context<never>
}

/** What every refused credential gets: it says nothing of why (this process's log does). */
const REFUSED = "the service credential was refused"

const refusal = (status: 401 | 426, tag: string, title: string, detail: string) =>
  Problem.response({ type: Problem.typeOf(tag), title, status, detail })

/** The subprotocols an upgrade offers (RFC 6455: a comma-separated list of tokens). */
const offered = (header: string | undefined) => (header ?? "").split(",").map((p) => p.trim())

const NO_HEAD = Buffer.alloc(0)

export const layer = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Context.Context<Rpc.ToHandler<Rpcs>>,
  options: {
    readonly secret: ServiceCredential.Secret
    readonly tracing?: boolean
    /**
     * Calls one connection may have in flight (default 4096); more are refused unrun, so a
     * runaway caller cannot exhaust the process.
     */
    readonly maxInFlight?: number
    /** How long calls in flight may take to finish at shutdown (default 10 s). */
    readonly grace?: Duration.DurationInput | undefined
    /** The largest message a peer may send, and this endpoint send (`TESSERA_RPC_MAX_FRAME_BYTES`). */
    readonly maxFrameBytes?: number | undefined
    /** A connection silent this long is closed (`TESSERA_RPC_HEARTBEAT_TIMEOUT`, default 3 s). */
    readonly heartbeatTimeout?: Duration.DurationInput | undefined
  }
) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const tracing = options.tracing ?? true
    const grace = Duration.decode(options.grace ?? "10 seconds")
    const maxInFlight = options.maxInFlight ?? 4096
    const maxFrameBytes = options.maxFrameBytes ?? Wire.DEFAULT_MAX_FRAME_BYTES
    const heartbeatTimeoutMs = Duration.toMillis(options.heartbeatTimeout ?? Settings.DEFAULT_RPC_HEARTBEAT_TIMEOUT)
    const verify = ServiceCredential.verifier(options.secret, module)
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const spanOptions = { kind: "server", captureStackTrace: false } as const
    const log = (level: "warn" | "error", message: string) =>
      runFork(level === "warn" ? Effect.logWarning(message) : Effect.logError(message))

    // The lane's own WebSocket server: it bounds messages (ws closes with 1009 when a frame
    // announces more than maxPayload, before reading it) and names the subprotocol it speaks.
    const wss = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new WebSocketServer({
          noServer: true,
          clientTracking: false,
          perMessageDeflate: false,
          maxPayload: maxFrameBytes,
          handleProtocols: (protocols) => (protocols.has(Wire.PROTOCOL) ? Wire.PROTOCOL : false)
        })
      ),
      (wss) => Effect.sync(() => wss.close())
    )

    const entries = new Map<string, Entry>()
    for (const [tag, codec] of Wire.codecs(group)) {
      const handler = handlers.unsafeMap.get(codec.rpc.key) as Rpc.Handler<string> | undefined
      if (handler === undefined) return yield* Effect.dieMessage(`${module} has no handler for ${tag}`)
      entries.set(tag, { name: `${module}.${tag}`, codec, handler: handler.handler, context: handler.context })
    }
    const tracer = yield* Effect.tracer
    const clock = yield* Effect.clock
    /** Whether a call's fiber must reset the caller headers it would inherit from this layer's. */
    const inheritsHeaders = Object.keys(FiberRefs.getOrDefault(runtime.fiberRefs, RpcClient.currentHeaders)).length > 0
    let connections = 0

    /** One connection, from the accepted upgrade until the socket closes. */
    const serve = (ws: WebSocket, credentialExpires: number) =>
      Effect.suspend(() => {
        const clientId = ++connections
        let open = true
        let draining = false
        let expiresAt = credentialExpires
        const inflight = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
        const idle = Deferred.unsafeMake<void>(FiberId.none)
        const closed = Deferred.unsafeMake<void>(FiberId.none)

        const send = Wire.sender((message) => {
          if (open) ws.send(message)
        }, maxFrameBytes)
        /** Sends a reply frame, or a defect in its place when it is larger than the lane carries. */
        const answer = (id: number, frame: string, name: string) => {
          if (!send(frame)) {
            send(Wire.defect(id, `${name} answered ${frame.length} characters or more, beyond the lane's ${maxFrameBytes} bytes (TESSERA_RPC_MAX_FRAME_BYTES)`))
          }
        }
        const close = (code: number, reason: string) => {
          if (open) ws.close(code, reason)
        }
        /** Tells the caller call `id` was not run (or was given up), and why. */
        const notRun = (id: number, reason: Wire.NotRunReason, message: string) => {
          send(JSON.stringify({ i: id, u: message, k: reason }))
        }

        const reply = (entry: Entry, id: number, exit: Exit.Exit<unknown, unknown>) => {
          try {
            if (Exit.isSuccess(exit)) {
              const encoded = entry.codec.encodeSuccess(exit.value)
              return answer(
                id,
                Either.isRight(encoded)
                  ? Wire.reply(id, { v: encoded.right }, entry.name)
                  : Wire.defect(id, `${entry.name} result does not match its contract: ${Wire.formatted(encoded.left)}`),
                entry.name
              )
            }
            if (Cause.isDie(exit.cause)) runFork(Effect.logError(`${entry.name} failed with a defect`, exit.cause))
            let encoded = entry.codec.encodeCause(exit.cause)
            const failure = Cause.failureOption(exit.cause)
            if (Either.isLeft(encoded) && Option.isSome(failure) && failure.value instanceof CallError) {
              // The handler let its own call's failure through: it dies as itself, as in process.
              encoded = entry.codec.encodeCause(Cause.die(failure.value))
            }
            answer(
              id,
              Either.isRight(encoded)
                ? Wire.reply(id, { e: encoded.right }, entry.name)
                : Wire.defect(id, `${entry.name} failed with an error its contract does not declare: ${Cause.pretty(exit.cause)}`),
              entry.name
            )
          } catch (error) {
            log("error", `${entry.name}: its answer could not be encoded: ${error}`)
            send(Wire.defect(id, `${entry.name} answered what could not be encoded`))
          }
        }

        const call = (frame: Wire.CallFrame) => {
          const id = frame.i
          const entry = entries.get(frame.t)
          if (entry === undefined) return send(Wire.defect(id, `${module} has no rpc ${Wire.preview(frame.t)}`))
          if (draining) return notRun(id, "ShuttingDown", `${module} is shutting down`)
          if (inflight.size >= maxInFlight) {
            return notRun(id, "Overloaded", `${module} has ${maxInFlight} calls in flight on this connection already`)
          }
          if (Date.now() >= expiresAt) {
            return notRun(id, "Refused", "the service credential of this connection has expired")
          }
          if (frame.d === 0) return notRun(id, "Deadline", `${entry.name} arrived after its deadline`)
          const payload = entry.codec.decodePayload(frame.p)
          if (Either.isLeft(payload)) {
            return send(Wire.defect(id, `${entry.name} payload does not match its contract: ${Wire.formatted(payload.left)}`))
          }
          const headers = frame.h === undefined ? Headers.empty : Headers.fromInput(frame.h)
          let result: unknown
          try {
            result = entry.handler(payload.right, { clientId, headers })
          } catch (error) {
            return reply(entry, id, Exit.die(error))
          }
          const handled = Effect.isEffect(result) ? result : (result as Rpc.Wrapper<unknown>).value
          if (!Effect.isEffect(handled)) return send(Wire.defect(id, `${entry.name}: streaming calls are not supported`))
          // The handler's own calls carry on the caller of this call, and no one else.
          const caller = Caller.fromHeaders(headers)
          const effect = Option.isSome(caller) || inheritsHeaders
            ? Effect.zipRight(
              FiberRef.set(RpcClient.currentHeaders, Option.isSome(caller) ? Headers.fromInput(Caller.toHeaders(caller.value)) : Headers.empty),
              handled as Effect.Effect<unknown, unknown>
            )
            : handled as Effect.Effect<unknown, unknown>
          // The call's fiber starts in the handler's module's context with its span as the parent
          // (or, untraced, the caller's): made here rather than by Effect.withSpan inside the
          // fiber, which would switch the fiber's context twice more.
          const parent = frame.s && Tracer.externalSpan({ traceId: frame.s[0], spanId: frame.s[1], sampled: frame.s[2] })
          const span = tracing
            ? tracer.span(entry.name, Option.fromNullable(parent), Context.empty(), [], clock.unsafeCurrentTimeNanos(), "server", spanOptions)
            : undefined
          span?.attribute(MODULE_ATTRIBUTE, module)
          const current = span ?? parent
          const context = current ? Context.add(entry.context, Tracer.ParentSpan, current) : entry.context
          const handlerRuntime = Runtime.make({ context, fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags })
          const d = frame.d
          // The handler's own calls get what is left of the caller's deadline.
          const fiber = d === undefined
            ? Runtime.runFork(handlerRuntime, effect)
            : Runtime.runFork(handlerRuntime, effect, {
              updateRefs: (refs, fiberId) =>
                FiberRefs.updateManyAs(refs, { forkAs: fiberId, entries: [[Deadline.current, [[fiberId, clock.unsafeCurrentTimeMillis() + d]]]] })
            })
          let expiry: NodeJS.Timeout | undefined
          let expired = false
          inflight.set(id, fiber)
          fiber.addObserver((exit) => {
            clearTimeout(expiry)
            span?.end(clock.unsafeCurrentTimeNanos(), exit)
            inflight.delete(id)
            if (!expired) reply(entry, id, exit)
            if (draining && inflight.size === 0) Deferred.unsafeDone(idle, Exit.void)
          })
          if (d !== undefined && inflight.has(id)) {
            // Past the deadline nobody waits for the answer: say so, and stop the handler.
            expiry = setTimeout(() => {
              expired = true
              notRun(id, "Deadline", `${entry.name} passed its deadline (${d} ms) while running`)
              fiber.unsafeInterruptAsFork(FiberId.none)
            }, d)
          }
        }

        /** A renewed credential: verified, it extends the connection's; refused, it ends it. */
        const renew = (token: string) =>
          runFork(verify(token).pipe(
            Effect.match({
              onSuccess: (expires) => (expiresAt = Math.max(expiresAt, expires)),
              onFailure: (refused) => {
                log("warn", `${module}: closing an RPC connection whose renewed credential was refused: ${refused.reason}`)
                close(4401, REFUSED)
              }
            })
          ))

        /** Closes a connection that broke the protocol: logged once, never quoting what it sent. */
        const protocolError = (what: string, code = Wire.CLOSE_PROTOCOL_ERROR) => {
          if (!open) return
          log("warn", `${module}: closing an RPC connection that sent ${what}`)
          close(code, what.slice(0, 100))
          open = false
        }

        const receive = (data: Buffer, isBinary: boolean) => {
          if (!open) return
          if (isBinary) return protocolError("a binary message", Wire.CLOSE_UNSUPPORTED_DATA)
          const frames = Wire.frames(data.toString())
          if (frames === undefined) return protocolError("a message that is not a JSON array of frames")
          for (const frame of frames) {
            if (frame.i !== undefined) {
              if (!Wire.isId(frame.i)) return protocolError("a frame whose id is not a non-negative integer")
              if (typeof frame.t === "string") {
                if (inflight.has(frame.i)) return protocolError(`a second call with the id ${frame.i}`)
                if (!Wire.isStrings(frame.h) || !Wire.isSpan(frame.s) || !Wire.isDeadline(frame.d)) {
                  return protocolError("a call with malformed headers, span or deadline")
                }
                try {
                  call(frame as unknown as Wire.CallFrame)
                } catch (error) {
                  // A call this endpoint could not even start (a payload too deep to check...)
                  // fails alone: the peer and every other call go on.
                  log("warn", `${module}: an RPC call could not be run: ${error instanceof Error ? error.name : "an error"}`)
                  send(Wire.defect(frame.i, `${module} could not run this call: ${error instanceof RangeError ? "its payload is too large or too deep" : "it is malformed"}`))
                }
              } else if (frame.x === 1) {
                inflight.get(frame.i)?.unsafeInterruptAsFork(FiberId.none)
              } else return protocolError("a frame with an id but neither a call nor an interrupt")
            } else if (typeof frame.c === "string") renew(frame.c)
            else return protocolError("a frame that is neither a call, an interrupt nor a credential")
          }
        }

        // The heartbeat: callers ping; a connection silent for the timeout is dropped.
        let heard = Date.now()
        const alive = () => {
          heard = Date.now()
        }
        ws.on("ping", alive)
        const silent = () => Date.now() - heard >= heartbeatTimeoutMs
        const watchdog = setInterval(() => {
          if (!silent()) return
          // Decided after this turn's I/O (a ping may be waiting if this process's loop stalled).
          setImmediate(() => {
            if (!silent() || !open) return
            log("warn", `${module}: closing an RPC connection silent for ${heartbeatTimeoutMs} ms`)
            open = false
            ws.terminate()
          })
        }, Math.max(100, Math.floor(heartbeatTimeoutMs / 3)))
        watchdog.unref()

        ws.on("message", (data: Buffer, isBinary: boolean) => {
          heard = Date.now()
          try {
            receive(data, isBinary)
          } catch (error) {
            // Whatever escapes the cases above ends this connection, never the process.
            log("error", `${module}: closing an RPC connection after an error reading it: ${error instanceof Error ? error.name : "an error"}`)
            close(Wire.CLOSE_INTERNAL_ERROR, "internal error")
            open = false
          }
        })
        // ws reports what broke the protocol (a message over maxPayload, invalid UTF-8...) here,
        // then closes the connection itself (1009, 1007...). Logged once, briefly.
        ws.on("error", (error) => log("warn", `${module}: closing an RPC connection: ${error.message.slice(0, 200)}`))
        ws.on("close", () => {
          clearInterval(watchdog)
          open = false
          Deferred.unsafeDone(closed, Exit.void)
        })

        /** Shutdown: refuse new calls, let those in flight finish (bounded), then say goodbye. */
        const drain = Effect.suspend(() => {
          draining = true
          // Finalizers run uninterruptibly: only an interruptible wait can be cut short by the timeout.
          return inflight.size === 0 || !open
            ? Effect.void
            : Effect.timeout(Effect.interruptible(Deferred.await(idle)), grace).pipe(Effect.ignore)
        }).pipe(
          Effect.zipRight(Effect.sleep(0)), // the last replies' batch goes out at setImmediate
          Effect.zipRight(Effect.sync(() => close(Wire.CLOSE_GOING_AWAY, `${module} is shutting down`)))
        )

        return Deferred.await(closed).pipe(
          Effect.onInterrupt(() => drain),
          Effect.ensuring(Effect.sync(() => {
            open = false
            for (const fiber of inflight.values()) fiber.unsafeInterruptAsFork(FiberId.none)
          }))
        )
      })

    /** Accepts the upgrade with the lane's own server; fails when the socket goes first. */
    const upgrade = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.async<WebSocket, void>((resume) => {
        const incoming = NodeHttpServerRequest.toIncomingMessage(request)
        const socket = incoming.socket
        const gone = () => resume(Effect.fail(undefined))
        if (socket.destroyed) return gone()
        // ws answers a malformed upgrade itself (400) and closes the socket without calling back.
        socket.once("close", gone)
        wss.handleUpgrade(incoming, socket, NO_HEAD, (ws) => {
          socket.off("close", gone)
          resume(Effect.succeed(ws))
        })
      })

    const router = yield* HttpApiBuilder.Router
    yield* router.get(
      path(module),
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (
          request.headers["upgrade"]?.toLowerCase() !== "websocket" ||
          !offered(request.headers["sec-websocket-protocol"]).includes(Wire.PROTOCOL)
        ) {
          return refusal(426, "UpgradeRequired", "Upgrade required", `${path(module)} speaks only WebSocket with the subprotocol ${Wire.PROTOCOL}`)
            .pipe(HttpServerResponse.setHeaders({ upgrade: "websocket", connection: "Upgrade" }))
        }
        const verified = yield* Effect.either(verify(request.headers[ServiceCredential.HEADER]))
        if (Either.isLeft(verified)) {
          yield* Effect.logWarning(`refused an RPC connection to ${module}: ${verified.left.reason}`)
          return refusal(401, "ServiceCredentialRefused", "Service credential refused", REFUSED)
        }
        const ws = yield* Effect.either(upgrade(request))
        if (Either.isRight(ws)) yield* serve(ws.right, verified.right)
        return HttpServerResponse.empty()
      })
    )
  })).pipe(Layer.provide(HttpApiBuilder.Router.Live))
