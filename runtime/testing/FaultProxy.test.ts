/**
 * The fault proxy does what each mode says, to new and to open connections, against a real
 * echo server behind it; and it reads the WebSocket messages that pass.
 */
import * as net from "node:net"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { WebSocket, WebSocketServer } from "ws"
import * as FaultProxy from "./FaultProxy.ts"

/** An echo server that counts the connections that reached it. */
let echo: net.Server
let reached = 0
let reachedAt = 0
/** Everything the echo server was sent. */
let heard = ""
let proxy: FaultProxy.FaultProxy

beforeAll(async () => {
  echo = net.createServer((socket) => {
    reached++
    reachedAt = performance.now()
    socket.on("error", () => {})
    socket.on("data", (chunk) => (heard += chunk.toString()))
    socket.pipe(socket)
  })
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve))
})
afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())))
afterEach(() => proxy?.close())

const startProxy = async () => {
  proxy = await FaultProxy.start({ port: (echo.address() as net.AddressInfo).port })
  return proxy
}

/** A client connection through the proxy that records what it received and how it ended. */
const connect = async () => {
  const socket = net.connect({ host: "127.0.0.1", port: proxy.port })
  let received = ""
  let error: NodeJS.ErrnoException | undefined
  socket.on("data", (chunk) => (received += chunk.toString()))
  socket.on("error", (e) => (error = e))
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()))
  let isClosed = false
  void closed.then(() => (isClosed = true))
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve)
    socket.once("error", reject)
  })
  return {
    socket,
    received: () => received,
    error: () => error,
    closed,
    isClosed: () => isClosed,
    /** Resolves once `text` has been received in full. */
    receives: (text: string) =>
      new Promise<void>((resolve) => {
        const check = () => (received.includes(text) ? (socket.off("data", check), resolve()) : undefined)
        socket.on("data", check)
        check()
      })
  }
}

const until = async (check: () => boolean) => {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10))
}

/** Long enough for bytes to cross loopback many times over: what has not arrived by then, will not. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 300))

describe("FaultProxy", () => {
  it("pass: forwards both ways and counts connections and bytes", async () => {
    await startProxy()
    const client = await connect()
    client.socket.write("hello")
    await client.receives("hello")
    expect(proxy.counts()).toMatchObject({ accepted: 1, open: 1, refused: 0, bytes: { toTarget: 5, toClient: 5 }, swallowed: 0 })
    client.socket.end()
    await client.closed
    await settle()
    expect(proxy.counts().open).toBe(0)
  })

  it("delay: every chunk arrives, in order, no sooner than the delay", async () => {
    await startProxy()
    const client = await connect()
    proxy.set(FaultProxy.delay(400))
    const sent = performance.now()
    for (const part of ["a", "b", "c", "d"]) client.socket.write(part)
    await client.receives("abcd")
    // The echo crosses the proxy twice, each way delayed.
    expect(performance.now() - sent).toBeGreaterThanOrEqual(2 * 400 - 5)
    expect(client.received()).toBe("abcd")
  })

  it("delay: a new connection reaches the target only after the delay", async () => {
    await startProxy()
    proxy.set(FaultProxy.delay(300))
    const before = reached
    const client = await connect()
    const connectedAt = performance.now()
    client.socket.write("x")
    await client.receives("x")
    expect(reached).toBe(before + 1)
    expect(reachedAt - connectedAt).toBeGreaterThanOrEqual(300 - 5)
  })

  it("delay: what a client sent before it went away still arrives, then the close", async () => {
    await startProxy()
    const client = await connect()
    client.socket.write("first")
    await client.receives("first")
    proxy.set(FaultProxy.delay(300))
    heard = ""
    client.socket.end("last words")
    client.socket.destroy()
    await until(() => heard === "last words")
    await until(() => proxy.counts().open === 0)
  })

  it("drop: new connections are closed at once; open ones go on", async () => {
    await startProxy()
    const open = await connect()
    open.socket.write("first")
    await open.receives("first")
    proxy.set(FaultProxy.drop)
    const before = reached
    const refused = await connect()
    await refused.closed
    expect(refused.received()).toBe("")
    expect(refused.error()).toBeUndefined()
    expect(reached).toBe(before)
    open.socket.write("still here")
    await open.receives("still here")
    expect(proxy.counts()).toMatchObject({ accepted: 2, refused: 1 })
  })

  it("reset: open connections are reset, and so are new ones", async () => {
    await startProxy()
    const open = await connect()
    open.socket.write("one")
    await open.receives("one")
    proxy.set(FaultProxy.reset)
    await open.closed
    expect(open.error()?.code).toBe("ECONNRESET")
    const next = net.connect({ host: "127.0.0.1", port: proxy.port })
    const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      next.once("error", resolve)
      next.once("close", () => resolve(undefined))
    })
    expect(error?.code).toBe("ECONNRESET")
    expect(proxy.counts().refused).toBe(2)
  })

  it("blackhole: nothing passes either way, nothing is answered; leaving it resets what lost bytes", async () => {
    await startProxy()
    const open = await connect()
    open.socket.write("before")
    await open.receives("before")
    proxy.set(FaultProxy.blackhole)
    const before = reached
    open.socket.write("lost")
    const fresh = await connect()
    fresh.socket.write("also lost")
    await settle()
    expect(open.received()).toBe("before")
    expect(fresh.received()).toBe("")
    expect(open.isClosed() || fresh.isClosed()).toBe(false)
    expect(reached).toBe(before)
    expect(proxy.counts().swallowed).toBe("lost".length + "also lost".length)

    proxy.set(FaultProxy.pass)
    await Promise.all([open.closed, fresh.closed])
    expect(open.error()?.code).toBe("ECONNRESET")
    const after = await connect()
    after.socket.write("back")
    await after.receives("back")
  })

  it("hang: new connections are accepted and never answered; open ones go on", async () => {
    await startProxy()
    const open = await connect()
    open.socket.write("first")
    await open.receives("first")
    proxy.set(FaultProxy.hang)
    const before = reached
    const hung = await connect()
    hung.socket.write("anyone?")
    open.socket.write("yes")
    await open.receives("yes")
    await settle()
    expect(hung.received()).toBe("")
    expect(hung.isClosed()).toBe(false)
    expect(reached).toBe(before)
    expect(proxy.counts()).toMatchObject({ accepted: 2, open: 2, swallowed: "anyone?".length })
  })

  it("reads the WebSocket messages each way, masked, fragmented and long", async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false })
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()))
    wss.on("connection", (ws) => ws.on("message", (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`)))
    try {
      proxy = await FaultProxy.start({ port: (wss.address() as net.AddressInfo).port })
      const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`, { perMessageDeflate: false })
      const replies: Array<string> = []
      ws.on("message", (data) => replies.push(data.toString()))
      await new Promise<void>((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)))
      const long = "x".repeat(70_000)
      const replied = (count: number) =>
        new Promise<void>((resolve) => {
          const check = () => (replies.length >= count ? resolve() : setTimeout(check, 10))
          check()
        })
      // One at a time, so that the order of arrival is known.
      ws.send("short")
      await replied(1)
      ws.send("frag", { fin: false })
      ws.ping()
      ws.send("mented", { fin: true })
      await replied(2)
      ws.send(long)
      ws.send(Buffer.from([1, 2, 3]), { binary: true })
      await replied(4)
      expect(proxy.messages("toTarget")).toEqual(["short", "fragmented", long])
      expect(proxy.messages("toClient")).toEqual(["echo:short", "echo:fragmented", `echo:${long}`])
      expect(proxy.arrivals().map((a) => `${a.direction}:${a.message.slice(0, 16)}`)).toEqual([
        "toTarget:short",
        "toClient:echo:short",
        "toTarget:fragmented",
        "toClient:echo:fragmented",
        `toTarget:${long.slice(0, 16)}`,
        `toClient:echo:${long.slice(0, 11)}`
      ])
      proxy.resetCounts()
      expect(proxy.messages("toTarget")).toEqual([])
      ws.close()
    } finally {
      await new Promise((resolve) => wss.close(resolve))
    }
  })
})
