/**
 * What a hostile peer can send to a module's RPC endpoint, and what it gets: every bad frame
 * fails that call (or closes that connection), never the process; every refused handshake gets
 * the same generic answer. The sweep over every module contract of this build is
 * `main.rpc.test.ts`; this file holds the lane-level cases, on bench/Echo.ts's contract.
 */
import { HttpApi, HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Logger, Redacted, Scope } from "effect"
import { createServer } from "node:http"
import { WebSocket } from "ws"
import { EchoHandlers, EchoRpcs } from "../../bench/Echo.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import * as RemoteClient from "./RemoteClient.ts"
import * as RpcEndpoint from "./RpcEndpoint.ts"
import * as Wire from "./Wire.ts"

const secret = Redacted.make("a-hostile-test-secret-long-enough-1234")
const MAX_FRAME_BYTES = 64 * 1024

/** What the endpoint logged: the server's own record of why it refused or closed. */
const logged: Array<string> = []
const capture = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ message }) => void logged.push((Array.isArray(message) ? message : [message]).map(String).join(" ")))
)

/** Serves echo on any port until the returned scope closes. */
export const serveEcho = async (options: Partial<Parameters<typeof RpcEndpoint.layer>[3]> = {}) => {
  const scope = await Effect.runPromise(Scope.make())
  const layer = HttpApiBuilder.serve().pipe(
    Layer.provide(
      Layer.unwrapScoped(Effect.map(Layer.build(EchoHandlers), (context) =>
        RpcEndpoint.layer("echo", EchoRpcs, context, { secret, maxFrameBytes: MAX_FRAME_BYTES, ...options })))
    ),
    Layer.provide(HttpApiBuilder.api(HttpApi.make("hostile-test"))),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(capture)
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
  return { url: `http://127.0.0.1:${address.port}`, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** A peer that holds a valid credential and writes whatever it likes on the socket. */
export const rawPeer = async (url: string, module: string) => {
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
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }))
  )
  ws.on("error", () => {})
  await new Promise((resolve, reject) => {
    ws.on("open", resolve)
    ws.on("unexpected-response", (_, response) => reject(new Error(`refused: ${response.statusCode}`)))
  })
  return {
    ws,
    closed,
    /** The largest message the endpoint sent this peer. */
    largest: () => size,
    send: (message: string | Buffer) => ws.send(message),
    /** The reply to call `id`. */
    reply: (id: number) =>
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

/** `depth` arrays nested in one another, innermost `[]`: the frame of defect 3. */
const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

describe("a hostile peer of an RPC endpoint", () => {
  let server: Awaited<ReturnType<typeof serveEcho>>
  let peer: Awaited<ReturnType<typeof rawPeer>>
  beforeAll(async () => {
    server = await serveEcho()
    peer = await rawPeer(server.url, "echo")
  })
  afterAll(async () => {
    peer.ws.close()
    await server.close()
  })

  const echo = async (target: Awaited<ReturnType<typeof rawPeer>>, id: number) => {
    target.send(JSON.stringify([{ i: id, t: "get", p: { id: `ok-${id}` } }]))
    expect(await target.reply(id)).toMatchObject({ i: id, v: { id: `ok-${id}` } })
  }

  it("fails a call whose payload is nested 5,000 deep, and the process, the connection and the others live on", async () => {
    const other = await rawPeer(server.url, "echo")
    const frame = `[{"i":1,"t":"get","p":{"id":${deep(5_000)}}}]`
    expect(frame.length).toBeGreaterThan(10_000)
    peer.send(frame)
    const reply = await peer.reply(1)
    const message = defectMessage(reply)
    expect(message).toMatch(/^echo\.get payload does not match its contract/)
    expect(message!.length).toBeLessThan(600)
    await echo(peer, 2)
    await echo(other, 1)
    other.ws.close()
  })
})
