/**
 * A TCP proxy that end-to-end tests put between two processes (point a peer's address in
 * `TESSERA_PEERS` at it) to make the network between them fail in the ways a real one does,
 * switched while the processes run:
 *
 * | mode | new connections | open connections |
 * |---|---|---|
 * | `pass` | forwarded | forwarded |
 * | `delay` | forwarded `ms` late (the connect, then every chunk, order kept) | every chunk `ms` after it arrived |
 * | `drop` | closed at once (FIN): the peer is not there | forwarded |
 * | `reset` | reset at once (RST) | reset (RST) when the mode is set |
 * | `blackhole` | accepted, nothing forwarded, never answered | nothing forwarded from now on |
 * | `hang` | accepted, never connected onward, never answered | forwarded |
 *
 * `hang` is a peer whose listen queue is alive but whose process no longer serves (a SIGSTOPped
 * process accepts into its backlog and says nothing); `blackhole` is a partition that also cuts
 * the connections already open. Bytes a blackhole swallowed are gone, so a connection that lost
 * any is closed (reset) when the mode changes away from `blackhole`: its byte stream cannot go
 * on (TCP would have retransmitted them; a test that wants that uses `delay`). Connections accepted
 * under `hang` or `blackhole` were never connected onward, and are reset likewise when the mode
 * changes: the client reconnects, as it would to a peer that came back.
 *
 * It counts connections and bytes each way, and, for WebSocket connections, decodes the
 * messages each way (RFC 6455 framing: masks, fragments, the three length forms; no extensions,
 * which the lane does not negotiate), so that a test can count the calls that reached a module
 * (`messages("toTarget")`), and see in which order the two ends spoke (`arrivals`), rather than
 * guess either from timing.
 */
import * as net from "node:net"

/** What the proxy does to connections; see the table above. */
export type Mode =
  | { readonly _tag: "pass" }
  | { readonly _tag: "delay"; readonly ms: number }
  | { readonly _tag: "drop" }
  | { readonly _tag: "reset" }
  | { readonly _tag: "blackhole" }
  | { readonly _tag: "hang" }

export const pass: Mode = { _tag: "pass" }
export const delay = (ms: number): Mode => {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`a delay is a non-negative number of ms, not ${ms}`)
  return { _tag: "delay", ms }
}
export const drop: Mode = { _tag: "drop" }
export const reset: Mode = { _tag: "reset" }
export const blackhole: Mode = { _tag: "blackhole" }
export const hang: Mode = { _tag: "hang" }

/** `toTarget`: from the connecting client to the target; `toClient`: the answers. */
export type Direction = "toTarget" | "toClient"

export interface Counts {
  /** Connections accepted since the proxy started (or `resetCounts`). */
  readonly accepted: number
  /** Connections open now (the client's side not yet closed). */
  readonly open: number
  /** Connections closed or reset by the proxy's mode (drop, reset, leaving blackhole). */
  readonly refused: number
  /** Bytes written onward to the target, and back to clients. */
  readonly bytes: Record<Direction, number>
  /** Bytes swallowed by `blackhole` or `hang`. */
  readonly swallowed: number
}

export interface FaultProxy {
  /** The port clients connect to (127.0.0.1). */
  readonly port: number
  /** `http://127.0.0.1:<port>`, for `TESSERA_PEERS`. */
  readonly url: string
  /** Switches the mode; open connections are affected as the table above says. */
  readonly set: (mode: Mode) => void
  readonly mode: () => Mode
  readonly counts: () => Counts
  /** The WebSocket text messages forwarded each way so far (a message swallowed is not here). */
  readonly messages: (direction: Direction) => ReadonlyArray<string>
  /**
   * Every WebSocket text message as it reached the proxy, before any delay or blackhole, both
   * ways in the one order they arrived: what each end sent, and which came first.
   */
  readonly arrivals: () => ReadonlyArray<{ readonly direction: Direction; readonly message: string }>
  /** Zeroes the counters and forgets the messages seen. */
  readonly resetCounts: () => void
  /** Stops listening and destroys every connection. */
  readonly close: () => Promise<void>
}

/** Starts a proxy on an ephemeral port of 127.0.0.1 that forwards to `target`. */
export const start = async (target: { readonly host?: string; readonly port: number }, initial: Mode = pass): Promise<FaultProxy> => {
  const host = target.host ?? "127.0.0.1"
  let mode = initial
  let counts = { accepted: 0, refused: 0, toTarget: 0, toClient: 0, swallowed: 0 }
  let seen: Record<Direction, Array<string>> = { toTarget: [], toClient: [] }
  let arrived: Array<{ readonly direction: Direction; readonly message: string }> = []
  const connections = new Set<Connection>()

  interface Connection {
    readonly client: net.Socket
    upstream: net.Socket | undefined
    /** Bytes were swallowed: the stream cannot resume. */
    tainted: boolean
    /** Accepted under `hang`: never forwarded, whatever the mode later. */
    readonly hung: boolean
    readonly destroy: (withReset: boolean) => void
  }

  const refuse = (connection: Connection, withReset: boolean) => {
    counts.refused++
    connection.destroy(withReset)
  }

  const onConnection = (client: net.Socket) => {
    counts.accepted++
    client.setNoDelay(true)
    client.on("error", () => {})
    const connection: Connection = {
      client,
      upstream: undefined,
      tainted: false,
      hung: mode._tag === "hang" || mode._tag === "blackhole",
      destroy: (withReset) => {
        for (const socket of [connection.client, connection.upstream]) {
          if (socket === undefined || socket.destroyed) continue
          if (withReset) socket.resetAndDestroy()
          else socket.destroy()
        }
      }
    }
    connections.add(connection)
    client.once("close", () => connections.delete(connection))

    if (mode._tag === "drop") return refuse(connection, false)
    if (mode._tag === "reset") return refuse(connection, true)
    if (connection.hung) {
      // Read and swallow, so the client's writes never block on a full buffer either.
      client.on("data", (chunk: Buffer) => {
        counts.swallowed += chunk.length
        connection.tainted = true
      })
      return
    }

    /** One reader of each direction as it arrives, one as it leaves. */
    const arriving: Record<Direction, WebSocketTap> = { toTarget: webSocketTap(), toClient: webSocketTap() }
    const leaving: Record<Direction, WebSocketTap> = { toTarget: webSocketTap(), toClient: webSocketTap() }
    /** Chunks of a direction leave in order even when each waits for its own delay. */
    const queues: Record<Direction, Promise<void>> = { toTarget: Promise.resolve(), toClient: Promise.resolve() }
    const forward = (direction: Direction, to: () => net.Socket | undefined) => (chunk: Buffer) => {
      for (const message of arriving[direction].push(chunk, direction === "toTarget")) arrived.push({ direction, message })
      const send = () => {
        const socket = to()
        if (socket === undefined || socket.destroyed) return
        if (mode._tag === "blackhole") {
          counts.swallowed += chunk.length
          connection.tainted = true
          return
        }
        counts[direction] += chunk.length
        for (const message of leaving[direction].push(chunk, direction === "toTarget")) seen[direction].push(message)
        socket.write(chunk)
      }
      // Each chunk leaves `ms` after it arrived (a link's latency, not a queue that adds up),
      // and never before the chunks that arrived earlier.
      const due = mode._tag === "delay" ? performance.now() + mode.ms : undefined
      queues[direction] = queues[direction].then(() => {
        const left = due === undefined ? 0 : due - performance.now()
        return left <= 0 ? send() : new Promise<void>((resolve) => setTimeout(() => (send(), resolve()), left))
      })
    }

    // Until the upstream connects, the client's bytes queue behind the connect.
    let connected!: () => void
    const ready = new Promise<void>((resolve) => (connected = resolve))
    queues.toTarget = ready
    client.on("data", forward("toTarget", () => connection.upstream))
    client.on("end", () => void queues.toTarget.then(() => connection.upstream?.end()))
    // A close follows the bytes sent before it, delayed as they are, as on a real slow link.
    client.once("close", () => void queues.toTarget.then(() => connection.upstream?.destroy()))

    const connect = () => {
      if (client.destroyed) return
      const upstream = net.connect({ host, port: target.port })
      connection.upstream = upstream
      upstream.setNoDelay(true)
      upstream.on("error", () => client.resetAndDestroy())
      upstream.once("connect", connected)
      upstream.on("data", forward("toClient", () => client))
      upstream.on("end", () => void queues.toClient.then(() => client.end()))
      upstream.once("close", () => void queues.toClient.then(() => client.destroy()))
    }
    if (mode._tag === "delay") setTimeout(connect, mode.ms)
    else connect()
  }

  const server = net.createServer({ noDelay: true }, onConnection)
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    set: (next) => {
      const previous = mode
      mode = next
      if (next._tag === "reset") for (const connection of [...connections]) refuse(connection, true)
      if ((previous._tag === "blackhole" || previous._tag === "hang") && next._tag !== previous._tag) {
        for (const connection of [...connections]) if (connection.tainted || connection.hung) refuse(connection, true)
      }
    },
    mode: () => mode,
    counts: () => ({
      accepted: counts.accepted,
      open: connections.size,
      refused: counts.refused,
      bytes: { toTarget: counts.toTarget, toClient: counts.toClient },
      swallowed: counts.swallowed
    }),
    messages: (direction) => [...seen[direction]],
    arrivals: () => [...arrived],
    resetCounts: () => {
      counts = { accepted: 0, refused: 0, toTarget: 0, toClient: 0, swallowed: 0 }
      seen = { toTarget: [], toClient: [] }
      arrived = []
    },
    close: async () => {
      for (const connection of [...connections]) connection.destroy(false)
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

interface WebSocketTap {
  /** Takes the next chunk of one direction; returns the text messages it completed. */
  readonly push: (chunk: Buffer, fromClient: boolean) => ReadonlyArray<string>
}

/**
 * Follows one direction of a connection: its HTTP head, then, once the head shows a WebSocket
 * (an upgrade request, or a 101 answer), its frames. A plain HTTP connection yields nothing.
 */
const webSocketTap = (): WebSocketTap => {
  let state: "head" | "frames" | "other" = "head"
  let buffer = Buffer.alloc(0)
  let fragments: Array<Buffer> = []
  /** Whether the message being assembled is text (its first frame's opcode was 1). */
  let text = false
  return {
    push: (chunk, fromClient) => {
      if (state === "other") return []
      buffer = Buffer.concat([buffer, chunk])
      const messages: Array<string> = []
      if (state === "head") {
        const end = buffer.indexOf("\r\n\r\n")
        if (end < 0) return messages
        const head = buffer.subarray(0, end).toString("latin1")
        const isWebSocket = fromClient ? /^upgrade:\s*websocket\s*$/im.test(head) : /^HTTP\/1\.1 101 /.test(head)
        state = isWebSocket ? "frames" : "other"
        buffer = buffer.subarray(end + 4)
        if (state === "other") return messages
      }
      for (;;) {
        if (buffer.length < 2) return messages
        const fin = (buffer[0]! & 0x80) !== 0
        const opcode = buffer[0]! & 0x0f
        const masked = (buffer[1]! & 0x80) !== 0
        let length = buffer[1]! & 0x7f
        let offset = 2
        if (length === 126) {
          if (buffer.length < 4) return messages
          length = buffer.readUInt16BE(2)
          offset = 4
        } else if (length === 127) {
          if (buffer.length < 10) return messages
          length = Number(buffer.readBigUInt64BE(2))
          offset = 10
        }
        const maskAt = offset
        if (masked) offset += 4
        if (buffer.length < offset + length) return messages
        const payload = Buffer.from(buffer.subarray(offset, offset + length))
        if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= buffer[maskAt + (i % 4)]!
        buffer = buffer.subarray(offset + length)
        // Control frames (close, ping, pong) may come between a message's fragments.
        if (opcode >= 0x8) continue
        // Opcode 0 continues a message; its first frame said text (1) or binary (2).
        if (opcode !== 0) text = opcode === 1
        fragments.push(payload)
        if (!fin) continue
        const whole = Buffer.concat(fragments)
        fragments = []
        if (text) messages.push(whole.toString("utf8"))
      }
    }
  }
}
