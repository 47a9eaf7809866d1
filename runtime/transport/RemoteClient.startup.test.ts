/**
 * A peer that is starting or stopping answers the RPC upgrade 503 (Startup.ts): the client takes
 * it as an answer, not a refusal of its credential — it fails calls at once saying so, keeps
 * dialling, and opens the connection as soon as the peer serves.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Redacted, Schema } from "effect"
import { createServer, type IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocketServer } from "ws"
import { freePort } from "../testing/Processes.ts"
import { CallError } from "./CallError.ts"
import * as RemoteClient from "./RemoteClient.ts"
import * as Wire from "./Wire.ts"

class Rpcs extends RpcGroup.make(Rpc.make("ping", { success: Schema.String })) {}

const secret = Redacted.make("a-startup-test-secret-long-enough-1234")

/** A peer that answers upgrades 503, as a starting process does, until `serve` is called. */
const peer = () =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const port = await freePort()
      const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has(Wire.PROTOCOL) ? Wire.PROTOCOL : false) })
      const attempts: Array<number> = []
      let serving = false
      const server = createServer((_request, response) => response.writeHead(404).end())
      server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
        attempts.push(serving ? 101 : 503)
        if (attempts.at(-1) === 503) {
          const body = JSON.stringify({
            type: "/problems/module-unavailable",
            title: "Service unavailable",
            status: 503,
            detail: "this process is starting (opening widgets); retry shortly"
          })
          socket.end(
            `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\n` +
              `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
          )
          return
        }
        wss.handleUpgrade(request, socket, head, () => {})
      })
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
      return { url: `http://127.0.0.1:${port}`, attempts, server, wss, serve: () => (serving = true) }
    }),
    ({ server, wss }) =>
      Effect.promise(() => {
        wss.close()
        server.closeAllConnections()
        return new Promise<void>((resolve) => server.close(() => resolve()))
      })
  )

describe("RemoteClient and a peer that is starting", () => {
  it.scopedLive("fails calls at once saying the peer is not serving, dials again, and opens once it serves", () =>
    Effect.gen(function*() {
      const starting = yield* peer()
      const opened: Array<boolean> = []
      let resolveOpen: () => void = () => {}
      const open = new Promise<void>((resolve) => (resolveOpen = resolve))
      const client = yield* RemoteClient.make("widgets", Rpcs, starting.url, {
        secret,
        caller: "gateway",
        onConnection: (isOpen) => {
          opened.push(isOpen)
          if (isOpen) resolveOpen()
        }
      })
      const early = yield* Effect.exit(client.ping())
      expect(Exit.isFailure(early)).toBe(true)
      if (Exit.isFailure(early)) {
        const error = early.cause._tag === "Fail" ? early.cause.error : undefined
        expect(error).toBeInstanceOf(CallError)
        expect(error).toMatchObject({ kind: "NotSent", reason: "NotServing" })
        expect((error as CallError).message).toMatch(/widgets at ws:.* is not serving: this process is starting/)
        expect((error as CallError).message).not.toMatch(/refused/)
      }
      // It keeps dialling while the peer starts...
      while (starting.attempts.length < 3) yield* Effect.sleep("50 millis")
      expect(opened).toEqual([])
      // ...and opens once it serves.
      starting.serve()
      yield* Effect.promise(() => open)
      expect(starting.attempts.at(-1)).toBe(101)
      expect(starting.attempts.slice(0, -1).every((status) => status === 503)).toBe(true)
      expect(opened).toEqual([true])
    }))
})
