/**
 * What a hostile peer can send to a module's RPC endpoint, and what it gets: every bad frame
 * fails that call (or closes that connection), never the process; every refused handshake gets
 * the same generic answer. The sweep over every module contract of this build is
 * `main.rpc.test.ts`; this file holds the lane-level cases, on bench/Echo.ts's contract.
 */
import { HttpApi, HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Layer, Logger, Redacted, Scope } from "effect"
import { Buffer } from "node:buffer"
import { randomBytes } from "node:crypto"
import { createServer, type IncomingHttpHeaders, request as httpRequest } from "node:http"
import * as jose from "jose"
import { WebSocketServer } from "ws"
import { EchoHandlers, EchoRpcs } from "../../bench/Echo.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import * as RawPeer from "../testing/RawPeer.ts"
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
const serveEcho = async (options: Partial<Parameters<typeof RpcEndpoint.layer>[3]> = {}) => {
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

const rawPeer = (url: string, module: string) => RawPeer.connect(url, module, secret)
const { defectMessage } = RawPeer
/** `depth` arrays nested in one another, innermost `[]`: the frame of defect 3. */
const deep = RawPeer.nestedArrays

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

describe("a hostile peer, frame by frame", () => {
  let server: Awaited<ReturnType<typeof serveEcho>>
  let peer: Awaited<ReturnType<typeof rawPeer>>
  let next = 100
  beforeAll(async () => {
    server = await serveEcho()
    peer = await rawPeer(server.url, "echo")
  })
  afterAll(async () => {
    peer.ws.close()
    await server.close()
  })

  /** The shared connection still answers. */
  const stillServes = async () => {
    const id = next++
    peer.send(JSON.stringify([{ i: id, t: "get", p: { id: `ok-${id}` } }]))
    expect(await peer.reply(id)).toMatchObject({ i: id, v: { id: `ok-${id}` } })
  }

  it.each([
    ["malformed JSON", "[{\"i\":1,", Wire.CLOSE_PROTOCOL_ERROR],
    ["JSON that is not an array of frames", "{\"i\":1}", Wire.CLOSE_PROTOCOL_ERROR],
    ["a binary message", Buffer.from(JSON.stringify([{ i: 1, t: "get", p: { id: "b" } }])), Wire.CLOSE_UNSUPPORTED_DATA],
    ["an id that is a string", JSON.stringify([{ i: "1", t: "get", p: { id: "x" } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["a negative id", JSON.stringify([{ i: -1, t: "get", p: { id: "x" } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["a fractional id", JSON.stringify([{ i: 1.5, t: "get", p: { id: "x" } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["an id beyond 2^53", JSON.stringify([{ i: 2 ** 60, t: "get", p: { id: "x" } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["a null id", JSON.stringify([{ i: null, t: "get", p: { id: "x" } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["a tag that is not a string", JSON.stringify([{ i: 1, t: 7, p: { id: "x" } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["headers that are not strings", JSON.stringify([{ i: 1, t: "get", p: { id: "x" }, h: { a: 1 } }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["a span with a huge trace id", JSON.stringify([{ i: 1, t: "get", p: { id: "x" }, s: ["a".repeat(10_000), "b", true] }]), Wire.CLOSE_PROTOCOL_ERROR],
    ["a deep frame list", deep(5_000), Wire.CLOSE_PROTOCOL_ERROR]
  ])("closes the connection that sends %s, and only that one", async (_, message, code) => {
    const hostile = await rawPeer(server.url, "echo")
    hostile.send(message)
    expect((await hostile.closed).code).toBe(code)
    await stillServes()
  })

  it("closes with 1009 a connection that sends a message over the limit, logs it once, and never echoes it", async () => {
    const hostile = await rawPeer(server.url, "echo")
    const before = logged.length
    hostile.send(JSON.stringify([{ i: 1, t: "get", p: { id: "x".repeat(MAX_FRAME_BYTES) } }]))
    expect((await hostile.closed).code).toBe(Wire.CLOSE_TOO_BIG)
    expect(hostile.largest()).toBe(0)
    const lines = logged.slice(before).filter((line) => line.includes("RPC connection"))
    expect(lines).toHaveLength(1)
    expect(lines[0]!.length).toBeLessThan(300)
    await stillServes()
  })

  const json = (value: unknown) => JSON.stringify(value)
  it.each([
    ["an unknown rpc, named by a huge tag", `"t":${json("x".repeat(50_000))},"p":{}`, /^echo has no rpc "x{10}/],
    ["a payload field nested 5,000 deep", `"t":"get","p":{"id":${deep(5_000)}}`, /^echo\.get payload does not match/],
    ["a payload nested 5,000 deep", `"t":"get","p":${deep(5_000)}`, /^echo\.get payload does not match/],
    ["an object nested 5,000 deep", `"t":"get","p":{"id":${RawPeer.nestedObjects(5_000)}}`, /^echo\.get payload does not match/],
    ["a field of the wrong type", `"t":"get","p":{"id":42}`, /^echo\.get payload does not match[\s\S]*actual 42/],
    ["a huge value of the wrong type", `"t":"get","p":{"id":[${json("y".repeat(50_000))}]}`, /^echo\.get payload does not match/],
    ["a wide value of the wrong type", `"t":"get","p":{"id":${json(Array.from({ length: 3_000 }, (_, i) => ({ [`k${i}`]: i })))}}`, /^echo\.get payload does not match/],
    ["no payload", `"t":"get"`, /^echo\.get payload does not match/]
  ])("fails the call that sends %s, quoting it only in a short preview", async (_, call, message) => {
    const id = next++
    peer.send(`[{"i":${id},${call}}]`)
    const reply = await peer.reply(id)
    expect(defectMessage(reply)).toMatch(message)
    expect(JSON.stringify(reply).length).toBeLessThan(1_000)
    await stillServes()
  })

  it("fails a call whose answer is larger than the lane carries, and answers the next", async () => {
    const id = next++
    peer.send(JSON.stringify([{ i: id, t: "get", p: { id: "z".repeat(MAX_FRAME_BYTES - 40) } }]))
    expect(defectMessage(await peer.reply(id))).toMatch(/^echo\.get answered .* beyond the lane's 65536 bytes/)
    await stillServes()
  })
})

describe("a client of the lane with a frame limit", () => {
  it("sends a burst larger than one message in several, and refuses a payload larger than the lane before sending it", async () => {
    const server = await serveEcho()
    const scope = await Effect.runPromise(Scope.make())
    const client = await Effect.runPromise(
      RemoteClient.make("echo", EchoRpcs, server.url, { secret, caller: "tests", maxFrameBytes: MAX_FRAME_BYTES }).pipe(Scope.extend(scope))
    )
    const ids = Array.from({ length: 100 }, (_, i) => `${i}-${"w".repeat(2_000)}`)
    const answers = await Effect.runPromise(Effect.forEach(ids, (id) => client.get({ id }), { concurrency: "unbounded" }))
    expect(answers.map((a) => a.id)).toEqual(ids)
    const exit = await Effect.runPromiseExit(client.get({ id: "v".repeat(MAX_FRAME_BYTES) }))
    expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(/echo\.get payload is larger than the lane carries \(65536 bytes/)
    expect((await Effect.runPromise(client.get({ id: "after" }))).id).toBe("after")
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await server.close()
  })
})

/** An upgrade request to `/rpc/echo` as a peer could write it; resolves the answer. */
const upgradeRequest = (url: string, headers: Record<string, string>) =>
  new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const request = httpRequest(`${url}/rpc/echo`, {
      agent: false,
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": randomBytes(16).toString("base64"),
        ...headers
      }
    })
    request.on("upgrade", (response, socket) => {
      socket.destroy()
      resolve({ status: response.statusCode ?? 0, headers: response.headers, body: "" })
    })
    request.on("response", (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }))
    })
    request.on("error", (error) => reject(new Error(`${JSON.stringify(headers).slice(0, 200)}: ${error}`)))
    request.end()
  })

const key = new TextEncoder().encode(Redacted.value(secret))
const now = () => Math.floor(Date.now() / 1000)
const signed = (claims: jose.JWTPayload, header: jose.JWTHeaderParameters = { alg: "HS256" }, signingKey: Uint8Array = key) =>
  new jose.SignJWT(claims).setProtectedHeader(header).sign(signingKey)
const unsigned = (claims: jose.JWTPayload) =>
  `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.`
const omit = (claims: jose.JWTPayload, claim: string) => Object.fromEntries(Object.entries(claims).filter(([k]) => k !== claim))
const good = (): jose.JWTPayload => ({ iss: "tessera/service", sub: "tests", aud: "echo", iat: now(), exp: now() + 300 })

describe("the handshake of an RPC endpoint", () => {
  let server: Awaited<ReturnType<typeof serveEcho>>
  beforeAll(async () => {
    server = await serveEcho()
  })
  afterAll(() => server.close())

  it("speaks exactly tessera-rpc.1: chosen among those offered, and anything else is 426 with Upgrade: websocket", async () => {
    const token = await signed(good())
    const among = await upgradeRequest(server.url, { "sec-websocket-protocol": `x, ${Wire.PROTOCOL}`, [ServiceCredential.HEADER]: token })
    expect(among.status).toBe(101)
    expect(among.headers["sec-websocket-protocol"]).toBe(Wire.PROTOCOL)
    for (const protocols of ["x", `${Wire.PROTOCOL}0`, "TESSERA-RPC.1", ""]) {
      const refused = await upgradeRequest(server.url, { "sec-websocket-protocol": protocols, [ServiceCredential.HEADER]: token })
      expect(refused.status).toBe(426)
      expect(refused.headers).toMatchObject({ upgrade: "websocket", connection: "Upgrade" })
    }
    // A malformed upgrade is refused by the WebSocket server itself; the endpoint lets it go.
    const malformed = await upgradeRequest(server.url, { "sec-websocket-protocol": Wire.PROTOCOL, [ServiceCredential.HEADER]: token, "sec-websocket-key": "short" })
    expect(malformed.status).toBe(400)
    const plain = await fetch(`${server.url}/rpc/echo`)
    expect(plain.status).toBe(426)
    expect(plain.headers.get("upgrade")).toBe("websocket")
    expect(plain.headers.get("connection")).toMatch(/upgrade/i)
  })

  it("refuses every wrong credential with the same generic answer, and logs exactly why", async () => {
    const cases: ReadonlyArray<readonly [string, () => Promise<string | undefined>, RegExp]> = [
      ["none", async () => undefined, /no service credential was presented/],
      ["garbage", async () => "not.a.jwt", /malformed/],
      ["valid ten years", () => signed({ ...good(), exp: now() + 10 * 365 * 86_400 }), /lives 315360000 seconds/],
      ["valid six minutes", () => signed({ ...good(), exp: now() + 360 }), /lives 360 seconds/],
      ["without exp", () => signed(omit(good(), "exp")), /exp claim is not valid \(missing\)/],
      ["without iat", () => signed(omit(good(), "iat")), /iat claim is not valid \(missing\)/],
      ["for several audiences", () => signed({ ...good(), aud: ["echo", "catalog"] }), /a list of audiences, not one/],
      ["for a list of one audience", () => signed({ ...good(), aud: ["echo"] }), /a list of audiences, not one/],
      ["for another module", () => signed({ ...good(), aud: "catalog" }), /aud claim is not valid/],
      ["from another issuer", () => signed({ ...good(), iss: "someone" }), /iss claim is not valid/],
      ["signed with HS512", () => signed(good(), { alg: "HS512" }), /not signed with HS256/],
      ["unsigned (alg none)", async () => unsigned(good()), /not signed with HS256|malformed/],
      ["signed with another secret", () => signed(good(), { alg: "HS256" }, new TextEncoder().encode("another-secret-another-secret-12345")), /signature is not valid/],
      ["expired", () => signed({ ...good(), iat: now() - 600, exp: now() - 300 }), /has expired/],
      ["not valid before a time to come", () => signed({ ...good(), nbf: now() + 200 }), /not valid yet \(nbf\)/],
      ["issued in the future", () => signed({ ...good(), iat: now() + 200, exp: now() + 400 }), /not valid yet \(iat/]
    ]
    const bodies = new Set<string>()
    for (const [name, token, reason] of cases) {
      const before = logged.length
      const presented = await token()
      const answer = await upgradeRequest(server.url, {
        "sec-websocket-protocol": Wire.PROTOCOL,
        ...(presented === undefined ? {} : { [ServiceCredential.HEADER]: presented })
      })
      expect(answer.status, name).toBe(401)
      bodies.add(answer.body)
      expect(logged.slice(before).join("\n"), name).toMatch(reason)
    }
    expect([...bodies]).toHaveLength(1)
    const body = JSON.parse([...bodies][0]!)
    expect(body).toEqual({
      type: "/problems/service-credential-refused",
      title: "Service credential refused",
      status: 401,
      detail: "the service credential was refused"
    })
    // The credential an issuer signs opens the connection.
    const accepted = await upgradeRequest(server.url, { "sec-websocket-protocol": Wire.PROTOCOL, [ServiceCredential.HEADER]: await signed(good()) })
    expect(accepted.status).toBe(101)
  })
})

describe("a hostile module, as its caller meets it", () => {
  /** What the fake module answers to `get({ id })`, by id: a message to send as it is. */
  const answers: Record<string, (i: number) => string | Buffer> = {
    "deep-cause": (i) => `[{"i":${i},"e":${"{\"_tag\":\"Sequential\",\"left\":".repeat(5_000)}{"_tag":"Empty"}${",\"right\":{\"_tag\":\"Empty\"}}".repeat(5_000)}}]`,
    "deep-value": (i) => `[{"i":${i},"v":{"id":${deep(5_000)},"sku":"s","name":"n","priceCents":1,"currency":"EUR"}}]`,
    "deep-defect": (i) => `[{"i":${i},"e":{"_tag":"Die","defect":${deep(5_000)}}}]`,
    "huge-refusal": (i) => JSON.stringify([{ i, u: "u".repeat(50_000) }]),
    "wrong-value": (i) => JSON.stringify([{ i, v: ["x".repeat(50_000)] }]),
    "deep-list": () => deep(5_000),
    "not-json": () => "[{",
    "binary": (i) => Buffer.from(JSON.stringify([{ i, v: null }])),
    "oversized": (i) => JSON.stringify([{ i, v: "o".repeat(MAX_FRAME_BYTES) }]),
    "bad-id": () => JSON.stringify([{ i: { a: 1 }, v: null }, { i: -1 }, { i: "x".repeat(10_000) }])
  }

  it("fails the call, never the process, whatever the module answers; the next call is answered", async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: () => Wire.PROTOCOL, maxPayload: 1 << 30 })
    wss.on("connection", (ws) =>
      ws.on("message", (data: Buffer) => {
        for (const frame of JSON.parse(data.toString()) as Array<{ i: number; t?: string; p?: { id: string } }>) {
          if (frame.t !== "get") continue
          const answer = answers[frame.p!.id]
          ws.send(answer ? answer(frame.i) : JSON.stringify([{ i: frame.i, v: { id: frame.p!.id, sku: "s", name: "n", priceCents: 1, currency: "EUR" } }]))
        }
      }))
    await new Promise((resolve) => wss.on("listening", resolve))
    const url = `http://127.0.0.1:${(wss.address() as { port: number }).port}`
    const scope = await Effect.runPromise(Scope.make())
    const client = await Effect.runPromise(
      RemoteClient.make("echo", EchoRpcs, url, { secret, caller: "tests", maxFrameBytes: MAX_FRAME_BYTES }).pipe(Scope.extend(scope))
    )
    const answered = async (id: string) => {
      for (let tries = 0; ; tries++) {
        const exit = await Effect.runPromiseExit(client.get({ id }))
        if (Exit.isSuccess(exit) || tries > 100) return exit
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    expect(Exit.isSuccess(await answered("first"))).toBe(true)
    for (const id of Object.keys(answers)) {
      const exit = await Effect.runPromiseExit(client.get({ id }))
      expect(Exit.isFailure(exit), id).toBe(true)
      if (Exit.isFailure(exit)) expect(Cause.pretty(exit.cause).length, id).toBeLessThan(2_000)
      // The connection may have been closed (a message the lane does not allow): it is dialled again.
      expect(Exit.isSuccess(await answered(`after-${id}`)), id).toBe(true)
    }
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await new Promise((resolve) => wss.close(resolve))
  })
})
