/**
 * The remote transport to a module hosted by a peer: one WebSocket to `ws://peer/rpc/<module>`
 * speaking the lane's protocol (Wire.ts), shared by every call this process makes to the module
 * (to that instance of it: a module with several has one lane each, RemotePool.ts).
 * Clients are built by Client.ts over it, with the same interceptors and errors as in process:
 * calling code cannot tell the two apart.
 *
 * - The connection opens with this process's service credential for the module
 *   (ServiceCredential.ts), renewed on the open connection before it expires. A peer that refuses
 *   the credential fails calls with `CallError` NotSent/Refused naming why.
 * - A peer that is down (NotSent/Unreachable), or starting or stopping (it answers the upgrade
 *   503, Startup.ts: NotSent/NotServing), fails calls at once (never a hang) while the connection
 *   is dialled again in the background (100 ms, growing to every 2 s; a call that finds it
 *   down has it dialled at once, at most every 100 ms); calls succeed again as soon as the
 *   peer is back. A call in flight when the connection drops fails
 *   OutcomeUnknown/ConnectionLost: it may have run.
 * - A peer that answers a call ShuttingDown is draining (RpcEndpoint.ts): the connection takes
 *   no new call from then on (they fail NotSent/ShuttingDown at once, and a pool sends them to
 *   another instance), while the calls in flight on it are still answered.
 * - A heartbeat: the connection is pinged every `heartbeatInterval`, and closed when nothing (no
 *   pong, no reply) has come back for `heartbeatTimeout`, so a frozen or cut-off peer fails the
 *   calls in flight within seconds, and new ones at once, instead of leaving them to hang.
 * - Each call carries what is left of its deadline (`d`, Deadline.ts): the peer gives up the
 *   handler when it passes, and Client.ts fails the call TimedOut and cancels it at the peer;
 *   a reply arriving later is ignored.
 * - Every call carries the caller it is made for (Caller.ts, from `RpcClient.currentHeaders`),
 *   and its span's ids (the call's own, or untraced the caller's), which the peer's span continues.
 * - Interrupting a call interrupts its handler at the peer.
 * - Nothing the peer sends can end this process: a message over `maxFrameBytes` closes the
 *   connection (1009; calls in flight fail as for a lost connection), a reply the contract does
 *   not describe, however deep or large, fails its call with a defect. A payload too large for
 *   the lane fails its call before anything is sent.
 */
import { Headers } from "@effect/platform"
import type { Rpc, RpcGroup } from "@effect/rpc"
import { Deferred, Duration, Effect, Either, Exit, type ParseResult, Runtime } from "effect"
import type { Buffer } from "node:buffer"
import { setImmediate } from "node:timers"
import { WebSocket } from "ws"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import * as Settings from "../Settings.ts"
import { CallError } from "./CallError.ts"
import * as Client from "./Client.ts"
import * as Wire from "./Wire.ts"

const OPEN_TIMEOUT_MS = 3_000
const RETRY_FIRST_MS = 100
const RETRY_MAX_MS = 2_000

/** `http://host:port` → `ws://host:port/rpc/<module>` (https → wss). */
export const endpoint = (peer: string, module: string): string => {
  const url = new URL(peer)
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/rpc/${module}`
  return url.toString()
}

export interface Options {
  readonly secret: ServiceCredential.Secret
  /** Who is calling: the calling process's modules, as the credential's subject. */
  readonly caller: string
  readonly tracing?: boolean
  /** Told each time the connection to the peer opens (`true`) or closes (`false`). */
  readonly onConnection?: (open: boolean) => void
  /**
   * Told each time the peer is found unreachable, refusing or not serving (a dial failed, or an
   * open connection closed): discovery resolves a DNS name again then (Discovery.ts).
   */
  readonly onDown?: () => void
  /** Wait (at most 3 s) for the connection's first open before the client is made (default true). */
  readonly awaitOpen?: boolean
  /** How long a credential lives (seconds; default five minutes, the most a module accepts). */
  readonly credentialSeconds?: number
  /** The largest message the peer may send, and this client send (`TESSERA_RPC_MAX_FRAME_BYTES`). */
  readonly maxFrameBytes?: number | undefined
  /** How often the connection is pinged (`TESSERA_RPC_HEARTBEAT_INTERVAL`, default 1 s). */
  readonly heartbeatInterval?: Duration.DurationInput | undefined
  /** A connection silent this long is closed (`TESSERA_RPC_HEARTBEAT_TIMEOUT`, default 3 s). */
  readonly heartbeatTimeout?: Duration.DurationInput | undefined
  /** Wrap each call, outermost first (default: `Client.standard`). */
  readonly interceptors?: ReadonlyArray<Client.Interceptor> | undefined
}

/** Why no call can be sent now: a CallError reason and the message that says it. */
interface Down {
  readonly reason: "Unreachable" | "NotServing" | "Refused" | "ShuttingDown"
  readonly message: string
}

/** The reply to a call, or `undefined` when the connection was lost first. */
type OnReply = (frame: Wire.ReplyFrame | undefined) => void

/**
 * The connection to one module at one peer, kept open: dialled at once, dialled again whenever it
 * closes, until `stop`. Plain callbacks, not fibers: this is the per-call path.
 */
const connect = (
  module: string,
  url: string,
  issuer: ReturnType<typeof ServiceCredential.issuer>,
  maxFrameBytes: number,
  heartbeat: { readonly intervalMs: number; readonly timeoutMs: number },
  hooks: {
    readonly onOpen: () => void
    readonly onClose: () => void
    /** The peer answered without opening the connection: it refused it, or is not serving yet. */
    readonly onRefused: () => void
    readonly onDown: () => void
    readonly log: (level: "warn" | "error", message: string) => void
  }
) => {
  let socket: WebSocket | undefined
  let open = false
  /** The open connection's peer said it is shutting down: it takes no new call (it answers those in flight). */
  let leaving: Down | undefined
  let stopped = false
  let attempts = 0
  /** A dial is under way (from its start until its connection opens or closes). */
  let dialling = false
  /** When the latest dial began (Date.now()). */
  let dialledAt = 0
  let retry: NodeJS.Timeout | undefined
  let renewal: NodeJS.Timeout | undefined
  let pinger: NodeJS.Timeout | undefined
  /** Why calls cannot be sent now. */
  let down: Down = { reason: "Unreachable", message: `the connection to ${url} is not open yet` }
  let logged: string | undefined
  let nextId = 0
  const pending = new Map<number, OnReply>()
  let send: (frame: string) => boolean = () => true

  /** Logs why the peer is unreachable, once per reason. */
  const unreachable = (message: string, level: "warn" | "error" = "warn", reason: Down["reason"] = "Unreachable") => {
    down = { reason, message }
    if (logged !== message) hooks.log(level, message)
    logged = message
    hooks.onDown()
  }

  /**
   * Pings the open connection every interval; closes it once nothing has come back for the
   * timeout (ws answers pings by itself, so a live peer always pongs).
   */
  const watch = (ws: WebSocket) => {
    let heard = Date.now()
    const alive = () => {
      heard = Date.now()
    }
    ws.on("pong", alive)
    ws.on("message", alive)
    const silent = () => Date.now() - heard >= heartbeat.timeoutMs
    pinger = setInterval(() => {
      if (!silent()) return ws.ping()
      // Decided after this turn's I/O: when this process's own event loop was what stalled, the
      // pong may be waiting in the socket, read only after the timers run.
      setImmediate(() => {
        if (!silent() || ws.readyState !== WebSocket.OPEN) return
        unreachable(`${module} at ${url} did not answer for ${heartbeat.timeoutMs} ms; reconnecting`)
        ws.terminate()
      })
    }, heartbeat.intervalMs)
    pinger.unref()
  }

  const redial = () => {
    if (stopped) return
    const delay = Math.min(RETRY_FIRST_MS * 1.5 ** attempts++, RETRY_MAX_MS)
    retry = setTimeout(dial, delay)
    retry.unref()
  }

  const renewLater = (ws: WebSocket, credential: ServiceCredential.Credential) => {
    renewal = setTimeout(() =>
      issuer.current().then((renewed) => {
        if (socket !== ws || !open) return
        send(JSON.stringify({ c: renewed.token }))
        renewLater(ws, renewed)
      }, (error) => hooks.log("error", `renewing the service credential for ${module} failed: ${error}`)), Math.max(0, issuer.renewalTime(credential) - Date.now()))
    renewal.unref()
  }

  const receive = (ws: WebSocket, data: Buffer, isBinary: boolean) => {
    const frames = isBinary ? undefined : Wire.frames(data.toString())
    if (frames === undefined) {
      hooks.log("error", `${module} sent a message that is not a JSON array of frames; reconnecting`)
      return ws.close(isBinary ? Wire.CLOSE_UNSUPPORTED_DATA : Wire.CLOSE_PROTOCOL_ERROR, "not a JSON array of frames")
    }
    for (const frame of frames) {
      if (!Wire.isId(frame.i)) {
        hooks.log("error", `${module} sent a reply whose id is not a non-negative integer; reconnecting`)
        return ws.close(Wire.CLOSE_PROTOCOL_ERROR, "a reply with a malformed id")
      }
      if (frame.k === "ShuttingDown" && leaving === undefined && ws === socket) {
        // The peer is draining (RpcEndpoint.ts): new calls go elsewhere or wait for the next
        // connection, not to it; the calls in flight on it are still answered.
        leaving = { reason: "ShuttingDown", message: `${module} at ${url} is shutting down` }
        hooks.onDown()
      }
      const onReply = pending.get(frame.i)
      if (onReply !== undefined) {
        pending.delete(frame.i)
        onReply(frame as unknown as Wire.ReplyFrame)
      }
    }
  }

  function dial() {
    dialling = true
    dialledAt = Date.now()
    issuer.current().then((credential) => {
      if (stopped) return
      const ws = new WebSocket(url, Wire.PROTOCOL, {
        headers: { [ServiceCredential.HEADER]: credential.token },
        perMessageDeflate: false,
        handshakeTimeout: OPEN_TIMEOUT_MS,
        maxPayload: maxFrameBytes
      })
      socket = ws
      let refused = false
      ws.on("open", () => {
        if (stopped) return ws.close()
        send = Wire.sender((message) => ws.send(message), maxFrameBytes)
        open = true
        leaving = undefined
        dialling = false
        attempts = 0
        logged = undefined
        renewLater(ws, credential)
        watch(ws)
        hooks.onOpen()
      })
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        try {
          receive(ws, data, isBinary)
        } catch (error) {
          // Whatever escapes ends this connection (it is dialled again), never the process.
          hooks.log("error", `${module}: closing the connection after an error reading it: ${error instanceof Error ? error.name : "an error"}`)
          ws.close(Wire.CLOSE_INTERNAL_ERROR, "internal error")
        }
      })
      // A refusal (401) carries a problem body saying why.
      ws.on("unexpected-response", (_request, response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          if (body.length < 2_000) body += chunk.slice(0, 2_000 - body.length)
        })
        response.on("end", () => {
          let detail = `HTTP ${response.statusCode}`
          try {
            detail = (JSON.parse(body) as { detail?: string }).detail ?? detail
          } catch {
            // not a problem body: the status says enough
          }
          refused = true
          if (response.statusCode === 503) {
            // The peer is starting or stopping (Startup.ts): it is there, not ready; dial again.
            unreachable(`${module} at ${url} is not serving: ${Wire.short(detail)}`, "warn", "NotServing")
          } else {
            const hint = response.statusCode === 401 ? " (every process needs the same TESSERA_SERVICE_SECRET)" : ""
            unreachable(`${module} at ${url} refused the connection: ${Wire.short(detail)}${hint}`, "error", "Refused")
          }
          hooks.onRefused()
          ws.terminate()
        })
      })
      ws.on("error", (error) => {
        if (!refused) unreachable(`${module} at ${url} is not reachable: ${error.message}`)
      })
      ws.on("close", (code) => {
        clearTimeout(renewal)
        clearInterval(pinger)
        if (socket === ws) socket = undefined
        const wasOpen = open
        open = false
        leaving = undefined
        dialling = false
        send = () => true
        if (wasOpen) {
          if (logged === undefined) {
            down = { reason: "Unreachable", message: `the connection to ${url} closed (${code}) and is being dialled again` }
          }
          const lost = [...pending.values()]
          pending.clear()
          for (const onReply of lost) onReply(undefined)
          hooks.onClose()
          hooks.onDown()
        }
        redial()
      })
    }, (error) => {
      dialling = false
      unreachable(`signing a service credential for ${module} failed: ${error}`, "error", "Refused")
      redial()
    })
  }

  dial()

  return {
    /** Why no call can be sent now, or `undefined` when one can. */
    unavailable: (): Down | undefined => (open ? leaving : down),
    /**
     * A call wants the connection, which is not open: dial now rather than at the end of the
     * backoff (a peer restarting is back within a few hundred milliseconds of its readiness,
     * not up to 2 s later), unless a dial is under way or began less than 100 ms ago.
     */
    wake: () => {
      if (stopped || open || dialling || Date.now() - dialledAt < RETRY_FIRST_MS) return
      clearTimeout(retry)
      dial()
    },
    /**
     * Sends a call; `onReply` gets its reply. The call's id, for `cancel`; `undefined` when the
     * call is larger than a message may be (nothing was sent).
     */
    call: (frame: Omit<Wire.CallFrame, "i">, onReply: OnReply): number | undefined => {
      const id = nextId++
      pending.set(id, onReply)
      if (send(JSON.stringify({ i: id, ...frame }))) return id
      pending.delete(id)
      return undefined
    },
    /** The caller gave up on call `id`: interrupt it at the peer. */
    cancel: (id: number) => {
      if (pending.delete(id)) send(`{"i":${id},"x":1}`)
    },
    stop: () => {
      stopped = true
      clearTimeout(retry)
      clearTimeout(renewal)
      clearInterval(pinger)
      socket?.close(Wire.CLOSE_GOING_AWAY, "the caller is shutting down")
    }
  }
}

/**
 * How the payload of each rpc of `group` is checked and encoded for the lane, by tag: the same
 * for every instance of a module (a call is prepared once, whichever instance carries it).
 */
export const preparers = (group: RpcGroup.RpcGroup<any>): ((info: { readonly tag: string; readonly name: string }) => Client.Carrier["prepare"]) => {
  const codecs = Wire.codecs(group)
  return ({ name, tag }) => {
    const codec = codecs.get(tag)!
    // As RpcClient does, a payload given as fields is built (and checked) by its Schema.Class.
    const makePayload = (codec.rpc.payloadSchema as { make?: (input: unknown) => unknown }).make
    return (input) => {
      let payload: Either.Either<unknown, ParseResult.ParseError>
      try {
        payload = codec.encodePayload(makePayload ? makePayload(input) : input)
      } catch (error) {
        return Either.left(
          new Error(`${name} payload does not match its contract: ${error instanceof Error ? error.message : String(error)}`)
        )
      }
      return Either.isRight(payload)
        ? payload
        : Either.left(new Error(`${name} payload does not match its contract: ${Wire.formatted(payload.left)}`))
    }
  }
}

/** The transport to one instance of a module, and whether its connection is open now. */
export interface Lane {
  readonly transport: Client.Transport
  /** Whether its connection is open and takes new calls (its peer did not say it is shutting down). */
  readonly connected: () => boolean
  /** Dials a connection that is not open now, rather than at the end of its backoff (at most every 100 ms). */
  readonly wake: () => void
}

/**
 * The transport to `module` at `peer`: its connection is opened now (waiting, bounded, for the
 * first open) and closed with the scope.
 */
export const transport = (module: string, group: RpcGroup.RpcGroup<any>, peer: string, options: Options) =>
  Effect.map(lane(module, group, peer, options), (lane) => lane.transport)

/** `transport`, with the state of its connection (RemotePool.ts keeps one per instance). */
export const lane = (module: string, group: RpcGroup.RpcGroup<any>, peer: string, options: Options) =>
  Effect.gen(function*() {
    const url = endpoint(peer, module)
    const maxFrameBytes = options.maxFrameBytes ?? Wire.DEFAULT_MAX_FRAME_BYTES
    const heartbeat = {
      intervalMs: Duration.toMillis(options.heartbeatInterval ?? Settings.DEFAULT_RPC_HEARTBEAT_INTERVAL),
      timeoutMs: Duration.toMillis(options.heartbeatTimeout ?? Settings.DEFAULT_RPC_HEARTBEAT_TIMEOUT)
    }
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const opened = yield* Deferred.make<void>()
    const issuer = ServiceCredential.issuer(options.secret, options.caller, module, options.credentialSeconds)
    const link = yield* Effect.acquireRelease(
      Effect.sync(() =>
        connect(module, url, issuer, maxFrameBytes, heartbeat, {
          onOpen: () => {
            Deferred.unsafeDone(opened, Exit.void)
            options.onConnection?.(true)
          },
          onClose: () => options.onConnection?.(false),
          onRefused: () => Deferred.unsafeDone(opened, Exit.void),
          onDown: () => options.onDown?.(),
          log: (level, message) => runFork(level === "warn" ? Effect.logWarning(message) : Effect.logError(message))
        })
      ),
      (link) => Effect.sync(link.stop)
    )
    // Wait (bounded) for the first open, so that a process whose peers are up answers its first
    // requests; until the peer is up, calls fail fast. A refusal is an answer: no use waiting; so
    // is a peer's "starting" (503): the two may be waiting for each other.
    if (options.awaitOpen !== false) {
      yield* Deferred.await(opened).pipe(
        Effect.timeout(OPEN_TIMEOUT_MS),
        Effect.catchAll(() => Effect.logWarning(`${module} at ${peer} is not reachable yet; calls fail until it is`))
      )
    }

    const codecs = Wire.codecs(group)
    const prepare = preparers(group)
    const carrier: Client.Transport = {
      rpc: ({ name, tag }) => {
        const codec = codecs.get(tag)!
        const tooLarge = () =>
          Exit.die(new Error(`${name} payload is larger than the lane carries (${maxFrameBytes} bytes, TESSERA_RPC_MAX_FRAME_BYTES)`))
        const notSent = (reason: CallError["reason"], message: string) =>
          Exit.fail(new CallError({ module, rpc: name, kind: "NotSent", reason, message: `${name} was not run: ${message}` }))

        /** The reply, decoded through the contract; a defect for one it does not describe. */
        const settle = (frame: Wire.ReplyFrame | undefined): Exit.Exit<unknown, unknown> => {
          try {
            return decode(frame)
          } catch (error) {
            // A reply too deep to decode (a Cause nested thousands deep...).
            return Exit.die(new Error(`${name} answered what its contract does not describe (${error instanceof Error ? error.name : "an error"})`))
          }
        }
        const decode = (frame: Wire.ReplyFrame | undefined): Exit.Exit<unknown, unknown> => {
          if (frame === undefined) {
            return Exit.fail(
              new CallError({
                module,
                rpc: name,
                kind: "OutcomeUnknown",
                reason: "ConnectionLost",
                message: `the connection to ${module} was lost before ${name} was answered: it may or may not have run`
              })
            )
          }
          if (frame.u !== undefined) {
            const said = typeof frame.u === "string" ? Wire.short(frame.u) : Wire.preview(frame.u)
            const reason = Wire.isNotRunReason(frame.k) && frame.k !== undefined ? frame.k : "Refused"
            return reason === "Deadline"
              ? Exit.fail(
                new CallError({ module, rpc: name, kind: "TimedOut", reason, message: `${module} gave up ${name} at its deadline (it may have run): ${said}` })
              )
              : notSent(reason, said)
          }
          if ("e" in frame) {
            const cause = codec.decodeCause(frame.e)
            return Either.isRight(cause)
              ? Exit.failCause(cause.right)
              : Exit.die(new Error(`${name} failed with what its contract does not describe: ${Wire.formatted(cause.left)}`))
          }
          const value = codec.decodeSuccess(frame.v)
          return Either.isRight(value)
            ? Exit.succeed(value.right)
            : Exit.die(new Error(`${name} answered what its contract does not describe: ${Wire.formatted(value.left)}`))
        }

        return {
          prepare: prepare({ name, tag }),
          attempt: (payload, headers, discard, parent, attemptMs) =>
            Effect.withFiberRuntime<unknown, unknown>((fiber) => {
              const down = link.unavailable()
              if (down !== undefined) {
                link.wake()
                return notSent(down.reason, down.message)
              }
              const frame: { -readonly [K in keyof Omit<Wire.CallFrame, "i">]: Wire.CallFrame[K] } = { t: tag, p: payload }
              if (hasAny(headers)) frame.h = headers
              if (parent) frame.s = [parent.traceId, parent.spanId, parent.sampled]
              if (discard) return link.call(frame, () => {}) === undefined ? tooLarge() : Exit.void
              const left = Client.millisLeft(fiber, attemptMs)
              if (left <= 0) return Exit.fail(Client.deadlineExceeded(module, name))
              if (left !== Number.POSITIVE_INFINITY) frame.d = Math.min(Wire.MAX_DEADLINE_MS, Math.ceil(left))
              return Effect.async<unknown, unknown>((resume) => {
                let timer: ReturnType<typeof setTimeout> | undefined
                const id = link.call(frame, (reply) => {
                  clearTimeout(timer)
                  resume(settle(reply))
                })
                if (id === undefined) return resume(tooLarge())
                // At the deadline the call is given up here and at the peer; a late reply finds
                // no call waiting for it and is dropped.
                if (left !== Number.POSITIVE_INFINITY) {
                  timer = setTimeout(() => {
                    link.cancel(id)
                    resume(Exit.fail(Client.deadlineExceeded(module, name)))
                  }, left)
                }
                return Effect.sync(() => {
                  clearTimeout(timer)
                  link.cancel(id)
                })
              })
            })
        }
      }
    }
    const lane: Lane = { transport: carrier, connected: () => link.unavailable() === undefined, wake: link.wake }
    return lane
  })

/** The client of `module` at `peer`: Client.make over its transport. */
export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  peer: string,
  options: Options
) =>
  Effect.map(
    transport(module, group, peer, options),
    (carrier) => Client.make(module, group, carrier, options.interceptors ?? Client.standard, { tracing: options.tracing ?? true })
  )

const hasAny = (headers: Headers.Headers) => {
  for (const _ in headers) return true
  return false
}
