/**
 * Serves a hosted module's contract to its peers at `/rpc/<module>` on the process's HTTP port:
 * a WebSocket speaking the lane's protocol (Wire.ts).
 *
 * - A connection opens only with a valid service credential for this module in its upgrade
 *   request (ServiceCredential.ts): anything else is answered 401 with a problem body naming why,
 *   before any handler runs. A connection whose credential expires without being renewed gets
 *   every further call refused, not run.
 * - Each call runs its handler in one fiber, in the module's own context, with the caller the call
 *   carries (Caller.ts) as the only caller its own calls carry on, under a span `<module>.<rpc>`
 *   (kind server, child of the caller's span, carrying `tessera.module`; without tracing, the
 *   caller's span is still the parent, so logs keep the trace id).
 * - A defect fails that call only. A caller that interrupts a call, or whose connection drops,
 *   interrupts its handler.
 * - A connection may have `maxInFlight` calls running at once; more are refused, not run.
 * - On shutdown, calls still arriving are refused (not run, so a caller may retry them
 *   elsewhere), the calls in flight finish and are answered (for up to `grace`), then the
 *   connection closes with 1001.
 */
import { Headers, HttpApiBuilder, HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import { type Rpc, RpcClient, type RpcGroup } from "@effect/rpc"
import {
  Cause,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  FiberRefs,
  Layer,
  Option,
  Runtime,
  Tracer
} from "effect"
import * as Problem from "../gateway/Problem.ts"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as Caller from "../security/Caller.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"
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

const refusal = (status: 401 | 426, tag: string, title: string, detail: string) =>
  Problem.response({ type: Problem.typeOf(tag), title, status, detail })

const decoder = new TextDecoder()

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
  }
) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const tracing = options.tracing ?? true
    const grace = Duration.decode(options.grace ?? "10 seconds")
    const maxInFlight = options.maxInFlight ?? 4096
    const verify = ServiceCredential.verifier(options.secret, module)
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const spanOptions = { kind: "server", captureStackTrace: false } as const

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
    const serve = (socket: Socket.Socket, credentialExpires: number) =>
      Effect.gen(function*() {
        const clientId = ++connections
        const write = yield* socket.writer
        let open = true
        let draining = false
        let expiresAt = credentialExpires
        const inflight = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
        const idle = Deferred.unsafeMake<void>(FiberId.none)

        const send = Wire.sender((message) => {
          if (open) runFork(write(message))
        })
        const close = (code: number, reason: string) => {
          if (open) runFork(write(new Socket.CloseEvent(code, reason)))
        }

        const reply = (entry: Entry, id: number, exit: Exit.Exit<unknown, unknown>) => {
          if (Exit.isSuccess(exit)) {
            const encoded = entry.codec.encodeSuccess(exit.value)
            return send(
              Either.isRight(encoded)
                ? Wire.reply(id, { v: encoded.right }, entry.name)
                : Wire.defect(id, `${entry.name} result does not match its contract: ${Wire.formatted(encoded.left)}`)
            )
          }
          if (Cause.isDie(exit.cause)) runFork(Effect.logError(`${entry.name} failed with a defect`, exit.cause))
          const encoded = entry.codec.encodeCause(exit.cause)
          send(
            Either.isRight(encoded)
              ? Wire.reply(id, { e: encoded.right }, entry.name)
              : Wire.defect(id, `${entry.name} failed with an error its contract does not declare: ${Cause.pretty(exit.cause)}`)
          )
        }

        const call = (frame: Wire.CallFrame) => {
          const id = frame.i
          const entry = entries.get(frame.t)
          if (entry === undefined) return send(Wire.defect(id, `${module} has no rpc ${frame.t}`))
          if (draining) return send(JSON.stringify({ i: id, u: `${module} is shutting down` }))
          if (inflight.size >= maxInFlight) {
            return send(JSON.stringify({ i: id, u: `${module} has ${maxInFlight} calls in flight on this connection already` }))
          }
          if (Date.now() >= expiresAt) {
            return send(JSON.stringify({ i: id, u: "the service credential of this connection has expired" }))
          }
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
          const fiber = Runtime.runFork(Runtime.make({ context, fiberRefs: runtime.fiberRefs, runtimeFlags: runtime.runtimeFlags }))(effect)
          inflight.set(id, fiber)
          fiber.addObserver((exit) => {
            span?.end(clock.unsafeCurrentTimeNanos(), exit)
            inflight.delete(id)
            reply(entry, id, exit)
            if (draining && inflight.size === 0) Deferred.unsafeDone(idle, Exit.void)
          })
        }

        /** A renewed credential: verified, it extends the connection's; refused, it ends it. */
        const renew = (token: string) =>
          runFork(verify(token).pipe(
            Effect.match({
              onSuccess: (expires) => (expiresAt = Math.max(expiresAt, expires)),
              onFailure: (refused) => close(4401, refused.reason)
            })
          ))

        const protocolError = (what: string) => {
          runFork(Effect.logWarning(`${module}: closing an RPC connection that sent ${what}`))
          close(Wire.CLOSE_PROTOCOL_ERROR, what)
        }

        const receive = (data: string | Uint8Array) => {
          const frames = Wire.frames(typeof data === "string" ? data : decoder.decode(data))
          if (frames === undefined) return protocolError("a message that is not a JSON array of frames")
          for (const frame of frames) {
            if (typeof frame.i === "number") {
              if (typeof frame.t === "string") {
                if (inflight.has(frame.i)) return protocolError(`a second call with the id ${frame.i}`)
                if (!Wire.isStrings(frame.h) || !Wire.isSpan(frame.s)) return protocolError("a call with malformed headers or span")
                call(frame as unknown as Wire.CallFrame)
              } else if (frame.x === 1) {
                inflight.get(frame.i)?.unsafeInterruptAsFork(FiberId.none)
              } else return protocolError("a frame with an id but neither a call nor an interrupt")
            } else if (typeof frame.c === "string") renew(frame.c)
            else return protocolError("a frame that is neither a call, an interrupt nor a credential")
          }
        }

        /** Shutdown: refuse new calls, let those in flight finish (bounded), then say goodbye. */
        const drain = Effect.suspend(() => {
          draining = true
          // Finalizers run uninterruptibly: only an interruptible wait can be cut short by the timeout.
          return inflight.size === 0 ? Effect.void : Effect.timeout(Effect.interruptible(Deferred.await(idle)), grace).pipe(Effect.ignore)
        }).pipe(
          Effect.zipRight(Effect.sleep(0)), // the last replies' batch goes out at setImmediate
          Effect.zipRight(Effect.sync(() => close(Wire.CLOSE_GOING_AWAY, `${module} is shutting down`)))
        )

        // The reader is not a child of this fiber: a child is interrupted with its parent, and
        // the socket must stay open while the calls in flight drain.
        const reading = yield* Effect.forkDaemon(socket.runRaw(receive))
        yield* Fiber.join(reading).pipe(
          Effect.catchAll(() => Effect.void),
          Effect.onInterrupt(() => drain),
          Effect.ensuring(Effect.suspend(() => {
            open = false
            for (const fiber of inflight.values()) fiber.unsafeInterruptAsFork(FiberId.none)
            return Fiber.interrupt(reading)
          }))
        )
      })

    const router = yield* HttpApiBuilder.Router
    yield* router.get(
      path(module),
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const protocols = (request.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim())
        if (request.headers["upgrade"]?.toLowerCase() !== "websocket" || !protocols.includes(Wire.PROTOCOL)) {
          return refusal(426, "UpgradeRequired", "Upgrade required", `${path(module)} speaks only WebSocket with the subprotocol ${Wire.PROTOCOL}`)
        }
        const verified = yield* Effect.either(verify(request.headers[ServiceCredential.HEADER]))
        if (Either.isLeft(verified)) {
          yield* Effect.logWarning(`refused an RPC connection to ${module}: ${verified.left.reason}`)
          return refusal(401, "ServiceCredentialRefused", "Service credential refused", verified.left.message)
        }
        const socket = yield* Effect.orDie(request.upgrade)
        yield* serve(socket, verified.right)
        return HttpServerResponse.empty()
      })
    )
  })).pipe(Layer.provide(HttpApiBuilder.Router.Live))
