/**
 * Every RPC of every module contract in this build, served as a module in another process
 * serves it (RpcEndpoint), against a peer that holds the service credential and sends hostile
 * frames: each bad call fails alone with a short defect, a malformed or oversized message closes
 * only its connection, and the process, its other connections and good calls carry on. The
 * handlers are stubs that fail with a defect of their own ("stub handler"): a call that reaches
 * one passed every check of the lane. Lane-level cases: runtime/transport/RpcEndpoint.hostile.test.ts.
 */
import { HttpApi, HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { Rpc, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Logger, LogLevel, Redacted, SchemaAST, Scope } from "effect"
import { createServer } from "node:http"
import { modules } from "./main.ts"
import * as Caller from "./runtime/security/Caller.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as RawPeer from "./runtime/testing/RawPeer.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as RpcEndpoint from "./runtime/transport/RpcEndpoint.ts"
import * as Wire from "./runtime/transport/Wire.ts"

const secret = Redacted.make("a-contract-sweep-secret-long-enough-12")
const MAX_FRAME_BYTES = 256 * 1024
const UUID = "00000000-0000-4000-8000-000000000000"
/** The headers of a call the orders module makes on its own account (inventory checks its callers). */
const AS_ORDERS = Caller.toHeaders(Caller.service("orders"))

/**
 * One call per module that passes its contract's checks (and so reaches the stub handler). Kept
 * by hand: the first test fails, naming it, for a module added without one.
 */
const goodCalls: Record<string, { readonly t: string; readonly p?: unknown }> = {
  catalog: { t: "get", p: { id: UUID } },
  inventory: { t: "get", p: { productId: UUID } },
  identity: { t: "jwks" },
  shipping: { t: "byOrder", p: { orderId: "order-1" } },
  payments: { t: "byOrder", p: { orderId: "order-1" } },
  orders: { t: "get", p: { id: UUID } },
  notifications: { t: "list", p: { limit: 5 } }
}

const stub = () => Effect.die(new Error("stub handler"))

/** Serves every module of the build, each with stub handlers, on one port. */
const serveAll = async () => {
  const scope = await Effect.runPromise(Scope.make())
  const endpoints = modules.map((module) => {
    const group = module.client.group as RpcGroup.RpcGroup<Rpc.Any>
    const handlers = Object.fromEntries([...group.requests.keys()].map((tag) => [tag, stub]))
    return Layer.unwrapScoped(Effect.map(Layer.build(group.toLayer(handlers as never)), (context) =>
      RpcEndpoint.layer(module.name, group, context as never, { secret, maxFrameBytes: MAX_FRAME_BYTES })))
  })
  const layer = HttpApiBuilder.serve().pipe(
    Layer.provide(Layer.mergeAll(...(endpoints as [Layer.Layer<never>]))),
    Layer.provide(HttpApiBuilder.api(HttpApi.make("contract-sweep"))),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(Logger.minimumLogLevel(LogLevel.None))
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
  return { url: `http://127.0.0.1:${address.port}`, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** The payload fields of an rpc, from its Schema (none for a payload that is not a struct). */
const fieldsOf = (rpc: Rpc.AnyWithProps): ReadonlyArray<string> => {
  try {
    return SchemaAST.getPropertySignatures(rpc.payloadSchema.ast).map((p) => String(p.name))
  } catch {
    return []
  }
}

/** What a hostile peer puts in a payload field (JSON text), and what the call must answer. */
const hostileValues: ReadonlyArray<readonly [string, string, RegExp]> = [
  ["arrays nested 5,000 deep", RawPeer.nestedArrays(5_000), /payload does not match its contract/],
  ["objects nested 5,000 deep", RawPeer.nestedObjects(5_000), /payload does not match its contract/],
  ["an object", `{"x":1,"__proto__":{"polluted":true}}`, /payload does not match its contract/],
  ["an array of 10,000 numbers", `[${Array.from({ length: 10_000 }, (_, i) => i).join(",")}]`, /payload does not match its contract/],
  ["a number", "1e308", /payload does not match its contract|stub handler/],
  ["null", "null", /payload does not match its contract|stub handler/],
  ["a string of 200,000 characters", JSON.stringify("s".repeat(200_000)), /payload does not match its contract|stub handler/],
  ["a string of control characters and lone surrogates", JSON.stringify("\u0000\u001b[2J\ud800\u202e".repeat(1_000)), /payload does not match its contract|stub handler/]
]

describe.each(modules.map((m) => [m.name, m] as const))("every rpc of %s, against a hostile peer", (name, module) => {
  let server: Awaited<ReturnType<typeof serveAll>>
  let peer: RawPeer.RawPeer
  let next = 1
  const group = module.client.group as RpcGroup.RpcGroup<Rpc.Any>
  const rpcs = [...group.requests.values()] as Array<Rpc.AnyWithProps>

  beforeAll(async () => {
    server = await serveAll()
    peer = await RawPeer.connect(server.url, name, secret)
  })
  afterAll(async () => {
    peer?.ws.close()
    await server?.close()
  })

  /** Sends a call (its fields as JSON text) and returns its reply, checked to be short. */
  const call = async (target: RawPeer.RawPeer, fields: string) => {
    const id = next++
    target.send(`[{"i":${id},${fields}}]`)
    const reply = await target.reply(id)
    expect(JSON.stringify(reply).length).toBeLessThan(1_000)
    return RawPeer.defectMessage(reply)
  }

  /** The module's good call still reaches its handler, on `target` (default: the shared connection). */
  const stillServes = async (target = peer) => {
    const good = goodCalls[name]!
    expect(await call(target, `"t":${JSON.stringify(good.t)}${good.p === undefined ? "" : `,"p":${JSON.stringify(good.p)}`}`)).toBe("stub handler")
  }

  it("has a good call to check the others against", async () => {
    expect(goodCalls[name], `add a call of ${name} that passes its contract to goodCalls`).toBeDefined()
    await stillServes()
  })

  it.each(rpcs.map((rpc) => [rpc._tag, rpc] as const))("%s: every hostile value in every payload field fails that call alone", async (tag, rpc) => {
    const fields = fieldsOf(rpc)
    for (const [what, json, answer] of hostileValues) {
      for (const field of fields) {
        const others = fields.filter((f) => f !== field).map((f) => `${JSON.stringify(f)}:"x"`)
        const message = await call(peer, `"t":${JSON.stringify(tag)},"p":{${[...others, `${JSON.stringify(field)}:${json}`].join(",")}}`)
        expect(message, `${tag}.${field} = ${what}`).toMatch(answer)
        expect(message, `${tag}.${field} = ${what}`).toMatch(new RegExp(`^(${name}\\.${tag} payload does not match|stub handler)`))
      }
      // The payload itself hostile (also for an rpc that takes none).
      const whole = await call(peer, `"t":${JSON.stringify(tag)},"p":${json}`)
      expect(whole, `${tag} payload = ${what}`).toMatch(/payload does not match its contract|stub handler/)
    }
    await stillServes()
  })

  it("fails a call of an unknown rpc alone, naming it briefly", async () => {
    expect(await call(peer, `"t":${JSON.stringify(`nope${"x".repeat(100_000)}`)},"p":{}`)).toMatch(new RegExp(`^${name} has no rpc "nope`))
    expect(await call(peer, `"t":"__proto__","p":{}`)).toMatch(new RegExp(`^${name} has no rpc "__proto__"`))
    expect(await call(peer, `"t":"toString","p":{}`)).toMatch(new RegExp(`^${name} has no rpc "toString"`))
    await stillServes()
  })

  it.each([
    ["malformed JSON", "[{\"i\":1,\"t\":", Wire.CLOSE_PROTOCOL_ERROR],
    ["a binary message", Buffer.from("[]"), Wire.CLOSE_UNSUPPORTED_DATA],
    ["a bad id", JSON.stringify([{ i: "1", t: "get", p: {} }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["frames nested 5,000 deep", RawPeer.nestedArrays(5_000), Wire.CLOSE_PROTOCOL_ERROR],
    ["a message over the limit", JSON.stringify([{ i: 1, t: "get", p: { id: "o".repeat(MAX_FRAME_BYTES) } }]), Wire.CLOSE_TOO_BIG]
  ])("closes only the connection that sends %s", async (_, message, code) => {
    const hostile = await RawPeer.connect(server.url, name, secret)
    const bystander = await RawPeer.connect(server.url, name, secret)
    hostile.send(message)
    expect((await hostile.closed).code).toBe(code)
    expect(hostile.largest()).toBe(0)
    await stillServes()
    await stillServes(bystander)
    bystander.ws.close()
  })
})

const postgres = await Services.findPostgres()

describe("a process serving /rpc/inventory (tessera serve)", () => {
  /**
   * Runs `test` against a live `tessera serve` hosting inventory alone (catalog placed where
   * nothing answers) on a fresh database, with `env` added; stops it and drops the database after.
   */
  const withInventory = async (env: Record<string, string>, test: (server: Processes.Server) => Promise<void>) => {
    const db = await Services.createDatabase((postgres as { value: string }).value)
    const server = Processes.spawnServer(await Processes.freePort(), {
      DATABASE_URL: db.url,
      TESSERA_MODULES: "inventory",
      TESSERA_PEERS: `catalog=http://127.0.0.1:${await Processes.freePort()}`,
      TESSERA_SERVICE_SECRET: Redacted.value(secret),
      ...env
    })
    try {
      // Serving, though not ready (catalog is down): readiness says more than "starting".
      const serving = async () => {
        const response = await fetch(`${server.url}/health/ready`).catch(() => undefined)
        return response !== undefined && ((await response.json()) as { status: string }).status !== "starting"
      }
      await until(serving, server)
      await test(server)
    } finally {
      await server.stop()
      await db.drop()
    }
  }

  it.runIf(postgres.ok)("answers the frame of issue 9 (a 10 KB payload nested 5,000 deep) with a defect, and lives on", async () => {
    await withInventory({}, async (server) => {
      const peer = await RawPeer.connect(server.url, "inventory", secret)
      const frame = `[{"i":1,"t":"get","p":{"productId":${RawPeer.nestedArrays(5_000)}}}]`
      expect(frame.length).toBeGreaterThan(10_000)
      peer.send(frame)
      // Before the fix the stack overflowed while the mismatch was formatted, and Node exited.
      const reply = await Promise.race([peer.reply(1), server.exited.then((code) => ({ exited: code }))])
      if ("exited" in reply) throw new Error(`the process exited (${reply.exited}):\n${server.output().slice(-2_000)}`)
      expect(RawPeer.defectMessage(reply)).toMatch(/^inventory\.get payload does not match its contract/)
      // The same connection and a new one still run calls (catalog is down: inventory says so).
      peer.send(JSON.stringify([{ i: 2, t: "get", p: { productId: UUID } }]))
      expect(await peer.reply(2)).toHaveProperty("e")
      const other = await RawPeer.connect(server.url, "inventory", secret)
      other.send(JSON.stringify([{ i: 1, t: "commit", p: { reservationId: "r-1" }, h: AS_ORDERS }]))
      expect(await other.reply(1)).toMatchObject({ e: { _tag: "Fail", error: { _tag: "ReservationNotFound" } } })
      expect(server.process.exitCode).toBeNull()
      peer.ws.close()
      other.ws.close()
    })
  }, 120_000)

  it.runIf(postgres.ok)("keeps an RPC connection open past the HTTP server's header, request and keep-alive timeouts", async () => {
    const timeouts = { TESSERA_HEADERS_TIMEOUT: "1 second", TESSERA_REQUEST_TIMEOUT: "1 second", TESSERA_KEEP_ALIVE_TIMEOUT: "1 second" }
    await withInventory(timeouts, async (server) => {
      const peer = await RawPeer.connect(server.url, "inventory", secret)
      // Node checks its timeouts every second here (ServerLimits.ts): three checks pass.
      const closed = await Promise.race([peer.closed, new Promise((resolve) => setTimeout(() => resolve(undefined), 3_500))])
      expect(closed).toBeUndefined()
      peer.send(JSON.stringify([{ i: 1, t: "commit", p: { reservationId: "r-1" }, h: AS_ORDERS }]))
      expect(await peer.reply(1)).toMatchObject({ e: { _tag: "Fail", error: { _tag: "ReservationNotFound" } } })
      peer.ws.close()
    })
  }, 120_000)
})

const until = async (check: () => Promise<boolean>, server: Processes.Server) => {
  const deadline = Date.now() + 90_000
  while (!(await check())) {
    if (server.process.exitCode !== null || Date.now() > deadline) throw new Error(`not live:\n${server.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}
