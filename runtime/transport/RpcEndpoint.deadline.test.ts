/**
 * The call frame's deadline (`d`) at the endpoint: a malformed one breaks the protocol like
 * malformed headers; an expired one is not run; a handler past it is given up and its caller
 * told so (`k` "Deadline"), and the handler sees the deadline it runs under.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Lane from "../testing/Lane.ts"
import * as RawPeer from "../testing/RawPeer.ts"
import * as Deadline from "./Deadline.ts"
import * as Wire from "./Wire.ts"

class ClockRpcs extends RpcGroup.make(
  Rpc.make("left", { success: Schema.Number }),
  Rpc.make("hang")
) {}

const handlers = ClockRpcs.toLayer({
  left: () => Effect.map(Deadline.remaining, (left) => (left === Number.POSITIVE_INFINITY ? -1 : left)),
  hang: () => Effect.never
})

describe("RpcEndpoint and the call's deadline", () => {
  let served: Lane.Served
  beforeAll(async () => {
    served = await Lane.serve("clock", ClockRpcs, handlers)
  })
  afterAll(() => served.close())

  it.each([
    ["negative", -1],
    ["fractional", 1.5],
    ["a string", "100"],
    ["beyond what a timer holds", 2 ** 31],
    ["null", null]
  ])("closes a connection whose call carries a deadline that is %s", async (_, d) => {
    const peer = await RawPeer.connect(served.url, "clock", Lane.secret)
    peer.send(JSON.stringify([{ i: 1, t: "left", p: {}, d }]))
    const closed = await peer.closed
    expect(closed.code).toBe(Wire.CLOSE_PROTOCOL_ERROR)
    expect(closed.reason).toMatch(/deadline/)
  })

  it("runs the handler under the deadline it carries, refuses an expired one unrun, and gives up one that passes", async () => {
    const peer = await RawPeer.connect(served.url, "clock", Lane.secret)
    peer.send(JSON.stringify([{ i: 1, t: "left", p: {}, d: 60_000 }, { i: 2, t: "left", p: {} }, { i: 3, t: "left", p: {}, d: 0 }]))
    const left = (await peer.reply(1)).v as number
    expect(left).toBeGreaterThan(0)
    expect(left).toBeLessThanOrEqual(60_000)
    expect((await peer.reply(2)).v).toBe(-1)
    expect(await peer.reply(3)).toMatchObject({ k: "Deadline" })
    expect((await peer.reply(3)).u).toMatch(/after its deadline/)
    peer.send(JSON.stringify([{ i: 4, t: "hang", p: {}, d: 50 }]))
    expect(await peer.reply(4)).toMatchObject({ k: "Deadline" })
    expect((await peer.reply(4)).u).toMatch(/passed its deadline/)
    peer.ws.close()
  })
})
