/**
 * What one slow or greedy client may hold of a process's HTTP server, whatever it serves
 * (gateway, RPC endpoints, health):
 *
 * - `TESSERA_HEADERS_TIMEOUT`: the request line and headers must arrive within this time
 *   (a slowloris client is cut, with a 408 problem);
 * - `TESSERA_REQUEST_TIMEOUT`: the whole request, body included, within this time (408);
 * - `TESSERA_KEEP_ALIVE_TIMEOUT`: an idle kept-alive connection is closed after this time;
 * - `TESSERA_MAX_HEADER_BYTES`: the request line and headers together (431 problem beyond);
 * - `TESSERA_MAX_CONNECTIONS`: open connections to the process (more are closed on arrival);
 * - `TESSERA_MAX_CONNECTIONS_PER_ADDRESS`: open connections from one peer address (more are
 *   answered 429 and closed). Behind a proxy every connection comes from the proxy: raise it or
 *   set 0 (off) there. WebSocket lanes between processes count as connections too.
 *
 * Answers written here go straight to the socket: no request object exists yet.
 */
import { Config, Duration } from "effect"
import { Buffer } from "node:buffer"
import * as http from "node:http"
import type * as net from "node:net"
import * as Problem from "./gateway/Problem.ts"
import * as Declared from "./Settings.ts"

export interface Settings {
  readonly headersTimeout: Duration.Duration
  readonly requestTimeout: Duration.Duration
  readonly keepAliveTimeout: Duration.Duration
  readonly maxHeaderBytes: number
  /** 0: no limit. */
  readonly maxConnections: number
  /** 0: no limit. */
  readonly maxConnectionsPerAddress: number
}

export const settings: Config.Config<Settings> = Config.all({
  headersTimeout: Declared.headersTimeout.config,
  requestTimeout: Declared.requestTimeout.config,
  keepAliveTimeout: Declared.keepAliveTimeout.config,
  maxHeaderBytes: Declared.maxHeaderBytes.config,
  maxConnections: Declared.maxConnections.config,
  maxConnectionsPerAddress: Declared.maxConnectionsPerAddress.config
}).pipe(
  // Checked at start with the other rules (Settings.rules); read on its own too, these hold it.
  Config.validate({
    message: Declared.headersWithinRequest.problem,
    validation: (s) => Declared.headersWithinRequest.holds(s.headersTimeout, s.requestTimeout)
  })
)

/** A complete HTTP/1.1 answer with a problem body, closing the connection. */
const rawProblem = (problem: Problem.Problem, headers: Record<string, string> = {}) => {
  const body = JSON.stringify(problem)
  const lines = [
    `HTTP/1.1 ${problem.status} ${http.STATUS_CODES[problem.status] ?? ""}`,
    `content-type: ${Problem.CONTENT_TYPE}`,
    `content-length: ${Buffer.byteLength(body)}`,
    "connection: close",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  ]
  return `${lines.join("\r\n")}\r\n\r\n${body}`
}

/** The answer to a request the server could not take in, by Node's error code. */
const clientErrorAnswer = (code: string | undefined, settings: Settings) => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return rawProblem(Problem.headersTooLarge(settings.maxHeaderBytes))
    case "HPE_HEADERS_TIMEOUT":
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return rawProblem(Problem.requestTimeout())
    default:
      return code?.startsWith("HPE_") ? rawProblem(Problem.unreadableRequest()) : undefined
  }
}

/**
 * Node checks its header and request timeouts on a timer: every second, so that a timeout is
 * enforced within a second of its value (Node's default is every 30 s).
 */
const CHECK_TIMEOUTS_EVERY_MS = 1_000

/** How long the rest of a body is read and dropped after an answer given before reading it. */
const DISCARD_MS = 5_000

/**
 * An answer given before its request's body was read whole (413, 415, 401, 404, ...) leaves the
 * rest of the body on the connection: it is read and dropped, so that the client, still sending,
 * reads the answer rather than a reset, and the connection can carry its next request. A body
 * still arriving `DISCARD_MS` later is cut. Node drops a body that no one began to read by itself;
 * Deno's node:http leaves it unread (the connection then hangs until the keep-alive timeout
 * resets it), and neither drops a body read in part (`ChunkedBody.ts` stops at the limit).
 */
const discardUnread = (request: http.IncomingMessage, socket: net.Socket) => {
  if (request.complete || request.destroyed || socket.destroyed) return
  const cut = setTimeout(() => socket.destroy(), DISCARD_MS)
  cut.unref()
  request.once("end", () => clearTimeout(cut))
  request.once("close", () => clearTimeout(cut))
  request.resume()
}

const ignore = () => {}

/** A `node:http` server with `settings` applied; `options` as `http.createServer` takes them. */
export const createServer = (settings: Settings, options: http.ServerOptions = {}): http.Server => {
  const server = http.createServer({
    ...options,
    headersTimeout: Duration.toMillis(settings.headersTimeout),
    requestTimeout: Duration.toMillis(settings.requestTimeout),
    maxHeaderSize: settings.maxHeaderBytes,
    connectionsCheckingInterval: Math.min(CHECK_TIMEOUTS_EVERY_MS, Duration.toMillis(settings.headersTimeout))
  })
  server.keepAliveTimeout = Duration.toMillis(settings.keepAliveTimeout)
  if (settings.maxConnections > 0) server.maxConnections = settings.maxConnections

  // Node takes its own 'error' listener off a socket when it emits 'upgrade', and the WebSocket
  // server puts one on only once the handler accepts the upgrade (after the credential check).
  // A peer that resets the connection in between (its handshake timed out while this process
  // was starting, say) would then raise an unhandled 'error' and stop the process. A socket's
  // error closes it anyway (its 'close' interrupts the request's fiber): nothing to do here.
  server.on("connection", (socket: net.Socket) => socket.on("error", ignore))

  if (settings.maxConnectionsPerAddress > 0) {
    const open = new Map<string, number>()
    server.on("connection", (socket: net.Socket) => {
      const address = socket.remoteAddress ?? "unknown"
      const count = (open.get(address) ?? 0) + 1
      if (count > settings.maxConnectionsPerAddress) {
        // Read nothing of it: answer, and close once the answer is written.
        socket.pause()
        socket.end(rawProblem(Problem.tooManyConnections(settings.maxConnectionsPerAddress), { "retry-after": "1" }))
        socket.once("finish", () => socket.destroy())
        return
      }
      open.set(address, count)
      socket.once("close", () => {
        const left = (open.get(address) ?? 1) - 1
        if (left === 0) open.delete(address)
        else open.set(address, left)
      })
    })
  }

  /** The answer to each connection's latest request: nothing may be written after its head. */
  const answers = new WeakMap<net.Socket, http.ServerResponse>()
  server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
    answers.set(request.socket, response)
    const socket = request.socket
    response.once("finish", () => discardUnread(request, socket))
  })

  // Replaces Node's default, which answers with a status line and no body. A timeout may also
  // strike a request already answered whose body is still arriving (a 413 or 415 answered
  // before reading it): such a connection is only closed.
  server.on("clientError", (error: NodeJS.ErrnoException, socket: net.Socket) => {
    const free = socket.writable && answers.get(socket)?.headersSent !== true
    const answer = free ? clientErrorAnswer(error.code, settings) : undefined
    if (answer === undefined) return void socket.destroy()
    socket.end(answer)
    socket.once("finish", () => socket.destroy())
  })

  return server
}
