/**
 * The heartbeat of the lane: a peer that stops answering (frozen, cut off: its TCP connection
 * stays open) is noticed by the caller within the heartbeat's timeout, and a caller that falls
 * silent is dropped by the endpoint.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema, Scope } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { WebSocketServer } from "ws"
import * as Lane from "../testing/Lane.ts"
import * as RawPeer from "../testing/RawPeer.ts"
import { CallError } from "./CallError.ts"
import * as Wire from "./Wire.ts"

class PingRpcs extends RpcGroup.make(Rpc.make("ping", { success: Schema.String })) {}

const handlers = PingRpcs.toLayer({ ping: () => Effect.succeed("pong") })

const failure = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

/**
 * A peer that accepts the first connection, speaks the protocol's upgrade, then never answers
 * anything (no pong, no reply), as a frozen process would; later connections are cut at once.
 */
const frozenPeer = async () => {
  const wss = new WebSocketServer({ noServer: true, autoPong: false, handleProtocols: () => Wire.PROTOCOL })
  const received: Array<string> = []
  let accepted = 0
  const server = createServer()
  server.on("upgrade", (request, socket, head) => {
    if (accepted++ > 0) return socket.destroy()
    wss.handleUpgrade(request, socket, head, (ws) => ws.on("message", (data) => received.push(String(data))))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

describe("the lane's heartbeat", () => {
  it("fails the calls in flight to a peer that stopped answering OutcomeUnknown, and new calls NotSent at once", async () => {
    const peer = await frozenPeer()
    const scope = await Effect.runPromise(Scope.make())
    const opened: Array<boolean> = []
    const client = await Lane.remote("pings", PingRpcs, peer.url, scope, {
      heartbeatInterval: "50 millis",
      heartbeatTimeout: "200 millis",
      onConnection: (open) => opened.push(open)
    })
    expect(opened).toEqual([true])
    // Sent, never answered: without the heartbeat this call would wait forever.
    const inFlight = await Effect.runPromiseExit(client.ping())
    expect(peer.received.some((message) => message.includes("\"t\":\"ping\""))).toBe(true)
    const lost = failure(inFlight)
    expect(lost).toBeInstanceOf(CallError)
    expect(lost).toMatchObject({ module: "pings", rpc: "pings.ping", kind: "OutcomeUnknown", reason: "ConnectionLost" })
    expect(opened).toEqual([true, false])
    // While it is dialled again (and cut), calls fail before being sent.
    const next = failure(await Effect.runPromiseExit(client.ping()))
    expect(next).toMatchObject({ kind: "NotSent", reason: "Unreachable" })
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await peer.close()
  })

  it("keeps a connection whose caller pings, and drops one that falls silent", async () => {
    const served = await Lane.serve("pings", PingRpcs, handlers, { heartbeatTimeout: "300 millis" })
    const scope = await Effect.runPromise(Scope.make())
    const opened: Array<boolean> = []
    const client = await Lane.remote("pings", PingRpcs, served.url, scope, {
      heartbeatInterval: "50 millis",
      heartbeatTimeout: "1 second",
      onConnection: (open) => opened.push(open)
    })
    // A raw peer sends nothing after its upgrade, not even pings: the endpoint closes it.
    const silent = await RawPeer.connect(served.url, "pings", Lane.secret, { heartbeat: false })
    const closed = await silent.closed
    expect(closed.code).toBe(1006)
    // Meanwhile the pinging client's connection stayed open all along.
    expect(await Effect.runPromise(client.ping())).toBe("pong")
    expect(opened).toEqual([true])
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await served.close()
  })
})
