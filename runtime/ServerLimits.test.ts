/**
 * The HTTP server every process serves on (ServerLimits.ts), at the seams the limits do not cover.
 */
import { Duration } from "effect"
import type * as http from "node:http"
import * as net from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import * as ServerLimits from "./ServerLimits.ts"

const settings: ServerLimits.Settings = {
  headersTimeout: Duration.seconds(5),
  requestTimeout: Duration.seconds(10),
  keepAliveTimeout: Duration.seconds(5),
  maxHeaderBytes: 16_384,
  maxConnections: 0,
  maxConnectionsPerAddress: 0
}

const UPGRADE = "GET /rpc/catalog HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

describe("ServerLimits.createServer", () => {
  let server: http.Server | undefined
  afterEach(() => new Promise<void>((resolve) => server ? server.close(() => resolve()) : resolve()))

  // Node hands an upgrade's socket to the 'upgrade' listener with no 'error' listener of its own;
  // @effect/platform's listener adds none unless the app accepts the upgrade. A peer that resets
  // such a connection (a process starting answers /rpc/* with 503) crashed the whole process.
  it("survives a peer resetting a WebSocket upgrade that was not accepted", async () => {
    server = ServerLimits.createServer(settings)
    const closed = new Promise<boolean>((resolve) => {
      // What @effect/platform does with an upgrade its app answers plainly: a response, no error listener.
      server!.on("upgrade", (_request: http.IncomingMessage, socket: net.Socket) => {
        socket.write("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        socket.once("close", (hadError) => resolve(hadError))
      })
    })
    server.on("request", (_request, response: http.ServerResponse) => response.end("still here"))
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as net.AddressInfo).port

    const client = net.connect(port, "127.0.0.1")
    client.on("error", () => {})
    await new Promise<void>((resolve) => client.once("connect", resolve))
    client.write(UPGRADE)
    // Wait for the answer, then reset: the server's next read meets ECONNRESET.
    await new Promise<void>((resolve) => client.once("data", () => resolve()))
    client.resetAndDestroy()
    expect(await closed).toBe(true)

    const answer = await fetch(`http://127.0.0.1:${port}/`)
    expect(await answer.text()).toBe("still here")
  })
})
