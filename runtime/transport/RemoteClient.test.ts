/**
 * The module-to-module lane end to end, in one process: RemoteClient against RpcEndpoint served
 * by a real HTTP server, over a real WebSocket.
 */
import { HttpApi, HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Rpc, RpcClient, RpcGroup } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Context, type Duration, Effect, Exit, Layer, Option, Redacted, Schema, Scope } from "effect"
import { createServer } from "node:http"
import { WebSocket } from "ws"
import * as Caller from "../security/Caller.ts"
import * as ServiceCredential from "../security/ServiceCredential.ts"
import { freePort } from "../testing/Processes.ts"
import { CallError } from "./CallError.ts"
import * as RemoteClient from "./RemoteClient.ts"
import * as RpcEndpoint from "./RpcEndpoint.ts"
import * as Wire from "./Wire.ts"

describe("RemoteClient.endpoint", () => {
  it.each([
    ["http://10.0.0.7:8080", "ws://10.0.0.7:8080/rpc/catalog"],
    ["https://api.example.com", "wss://api.example.com/rpc/catalog"],
    ["https://api.example.com:8443", "wss://api.example.com:8443/rpc/catalog"],
    ["http://host:8080/", "ws://host:8080/rpc/catalog"],
    ["http://host:8080/tessera", "ws://host:8080/tessera/rpc/catalog"],
    ["https://host/a/b//", "wss://host/a/b/rpc/catalog"]
  ])("maps %s to %s", (peer, expected) => {
    expect(RemoteClient.endpoint(peer, "catalog")).toBe(expected)
  })
})

class Widget extends Schema.Class<Widget>("test/Widget")({
  id: Schema.String,
  tags: Schema.Array(Schema.String),
  madeAt: Schema.Date
}) {}

class WidgetNotFound extends Schema.TaggedError<WidgetNotFound>()("WidgetNotFound", { id: Schema.String }) {}
class Undeclared extends Schema.TaggedError<Undeclared>()("Undeclared", { reason: Schema.String }) {}

const Seen = Schema.Struct({
  caller: Schema.NullOr(Schema.String),
  carriedOn: Schema.NullOr(Schema.String),
  traceId: Schema.NullOr(Schema.String),
  parentSpanId: Schema.NullOr(Schema.String)
})

class WidgetRpcs extends RpcGroup.make(
  Rpc.make("get", { payload: { id: Schema.String }, success: Widget, error: WidgetNotFound }),
  Rpc.make("slow", { payload: { ms: Schema.Number }, success: Schema.Number }),
  Rpc.make("seen", { success: Seen }),
  Rpc.make("nothing")
) {}

const secret = Redacted.make("a-lane-test-secret-long-enough-123456")
const madeAt = new Date("2026-01-02T03:04:05.678Z")
/** Calls of `slow` whose handler was interrupted. */
const interrupted: Array<number> = []

const handlers = WidgetRpcs.toLayer({
  get: ({ id }) => {
    switch (id) {
      case "missing":
        return Effect.fail(new WidgetNotFound({ id }))
      case "undeclared":
        return Effect.fail(new Undeclared({ reason: "not in the contract" })) as unknown as Effect.Effect<Widget>
      case "boom":
        return Effect.die(new Error("handler blew up"))
      default:
        return Effect.succeed(new Widget({ id, tags: ["a", id], madeAt }))
    }
  },
  slow: ({ ms }) => Effect.as(Effect.sleep(ms), ms).pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted.push(ms)))),
  seen: (_, { headers }) =>
    Effect.gen(function*() {
      const carried = Caller.fromHeaders(yield* RpcClient.currentHeaders)
      const span = yield* Effect.option(Effect.currentParentSpan)
      const parent = Option.flatMap(span, (s) => (s._tag === "Span" ? s.parent : Option.some(s)))
      return {
        caller: Option.match(Caller.fromHeaders(headers), { onNone: () => null, onSome: (c) => c.id }),
        carriedOn: Option.match(carried, { onNone: () => null, onSome: (c) => c.id }),
        traceId: Option.match(span, { onNone: () => null, onSome: (s) => s.traceId }),
        parentSpanId: Option.match(parent, { onNone: () => null, onSome: (s) => s.spanId })
      }
    }),
  nothing: () => Effect.void
})

/** Serves `widgets` on `port` (0: any) until the returned scope closes. */
const serve = async (port: number, options: { tracing?: boolean; grace?: Duration.DurationInput; maxInFlight?: number } = {}) => {
  const scope = await Effect.runPromise(Scope.make())
  const layer = HttpApiBuilder.serve().pipe(
    Layer.provide(
      Layer.unwrapScoped(Effect.map(Layer.build(handlers), (context) =>
        RpcEndpoint.layer("widgets", WidgetRpcs, context, { secret, ...options })))
    ),
    Layer.provide(HttpApiBuilder.api(HttpApi.make("lane-test"))),
    HttpServer.withLogAddress,
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
  return { url: `http://127.0.0.1:${address.port}`, port: address.port, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

type Client = RpcClient.RpcClient<RpcGroup.Rpcs<typeof WidgetRpcs>, CallError>

const connect = async (scope: Scope.Scope, url: string, options: Partial<RemoteClient.Options> = {}) => {
  const opened: Array<boolean> = []
  const client = await Effect.runPromise(
    RemoteClient.make("widgets", WidgetRpcs, url, {
      secret,
      caller: "tests",
      onConnection: (open) => opened.push(open),
      ...options
    }).pipe(Scope.extend(scope))
  )
  return { client: client as Client, opened }
}

const failure = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none())
const defect = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) as Error | undefined : undefined

const until = async (check: () => Promise<boolean> | boolean, ms = 5_000) => {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting")
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe("the lane (RemoteClient ↔ RpcEndpoint)", () => {
  let server: Awaited<ReturnType<typeof serve>>
  let scope: Scope.CloseableScope
  let client: Client

  beforeAll(async () => {
    server = await serve(0)
    scope = await Effect.runPromise(Scope.make())
    client = (await connect(scope, server.url)).client
  })
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await server.close()
  })

  it("answers with the contract's values, as fresh instances", async () => {
    const widget = await Effect.runPromise(client.get({ id: "w-1" }))
    expect(widget).toBeInstanceOf(Widget)
    expect(widget).toEqual(new Widget({ id: "w-1", tags: ["a", "w-1"], madeAt }))
    expect(widget.madeAt).toBeInstanceOf(Date)
    expect(await Effect.runPromise(client.nothing())).toBeUndefined()
  })

  it("fails with the contract's typed errors as real instances", async () => {
    const exit = await Effect.runPromiseExit(client.get({ id: "missing" }))
    const error = Option.getOrUndefined(failure(exit))
    expect(error).toBeInstanceOf(WidgetNotFound)
    expect(error).toMatchObject({ id: "missing" })
  })

  it("turns a handler's defect, and an error its contract does not declare, into defects of that call only", async () => {
    expect(defect(await Effect.runPromiseExit(client.get({ id: "boom" })))?.message).toBe("handler blew up")
    expect(defect(await Effect.runPromiseExit(client.get({ id: "undeclared" })))?.message).toMatch(/does not declare/)
    expect((await Effect.runPromise(client.get({ id: "after" }))).id).toBe("after")
  })

  it("refuses, before sending, a payload that does not match the contract", async () => {
    const exit = await Effect.runPromiseExit(client.get({ id: 42 as unknown as string }))
    expect(defect(exit)?.message).toMatch(/widgets\.get payload does not match its contract/)
  })

  it("answers many concurrent calls, each with its own result", async () => {
    const ids = Array.from({ length: 500 }, (_, i) => `c-${i}`)
    const widgets = await Effect.runPromise(Effect.forEach(ids, (id) => client.get({ id }), { concurrency: "unbounded" }))
    expect(widgets.map((w) => w.id)).toEqual(ids)
  })

  it("passes the caller to the handler, which carries it on and no one else", async () => {
    const caller = new Caller.Caller({ kind: "user", id: "u-7", role: "customer" })
    const seen = await Effect.runPromise(Caller.withCaller(caller)(client.seen()))
    expect(seen).toMatchObject({ caller: "u-7", carriedOn: "u-7" })
    expect(await Effect.runPromise(client.seen())).toMatchObject({ caller: null, carriedOn: null })
  })

  it("continues the caller's trace: the handler's span is a child of the call's", async () => {
    const [outer, seen] = await Effect.runPromise(
      Effect.all([Effect.currentSpan, client.seen()]).pipe(Effect.withSpan("outer"))
    )
    expect(seen.traceId).toBe(outer.traceId)
    // The handler's parent is the client span of the call, itself a child of "outer".
    expect(seen.parentSpanId).not.toBe(outer.spanId)
    expect(seen.parentSpanId).not.toBeNull()
  })

  it("interrupts the handler when the caller gives up", async () => {
    const exit = await Effect.runPromiseExit(client.slow({ ms: 10_001 }).pipe(Effect.timeout("100 millis")))
    expect(Exit.isFailure(exit)).toBe(true)
    await until(() => interrupted.includes(10_001))
  })

  it("answers 426 to a request that does not speak the lane, and 401 to an upgrade without a valid credential", async () => {
    const plain = await fetch(`${server.url}/rpc/widgets`)
    expect(plain.status).toBe(426)
    expect(await plain.json()).toMatchObject({ status: 426, detail: expect.stringContaining(Wire.PROTOCOL) })
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(RemoteClient.endpoint(server.url, "widgets"), Wire.PROTOCOL)
      ws.on("unexpected-response", (_, response) => resolve(response.statusCode ?? 0))
      ws.on("open", () => resolve(101))
    })
    expect(status).toBe(401)
  })

  it("closes a connection that sends what is not the protocol", async () => {
    const credential = await ServiceCredential.issuer(secret, "tests", "widgets").current()
    const ws = new WebSocket(RemoteClient.endpoint(server.url, "widgets"), Wire.PROTOCOL, {
      headers: { [ServiceCredential.HEADER]: credential.token }
    })
    await new Promise((resolve) => ws.on("open", resolve))
    const closed = new Promise<number>((resolve) => ws.on("close", resolve))
    ws.send("this is not JSON")
    expect(await closed).toBe(Wire.CLOSE_PROTOCOL_ERROR)
    // A call whose headers are not strings is not a call either.
    const again = new WebSocket(RemoteClient.endpoint(server.url, "widgets"), Wire.PROTOCOL, {
      headers: { [ServiceCredential.HEADER]: credential.token }
    })
    await new Promise((resolve) => again.on("open", resolve))
    const closedAgain = new Promise<number>((resolve) => again.on("close", resolve))
    again.send(JSON.stringify([{ i: 1, t: "get", p: { id: "x" }, h: 5 }]))
    expect(await closedAgain).toBe(Wire.CLOSE_PROTOCOL_ERROR)
    // Everyone else's connection is untouched.
    expect((await Effect.runPromise(client.get({ id: "still" }))).id).toBe("still")
  })

  it("fails calls NotSent/Refused, naming the refusal, when the credential is not the deployment's", async () => {
    const other = await Effect.runPromise(Scope.make())
    const { client: intruder } = await connect(other, server.url, {
      secret: Redacted.make("not-the-deployments-secret-at-all-123")
    })
    const error = Option.getOrUndefined(failure(await Effect.runPromiseExit(intruder.get({ id: "w" }))))
    expect(error).toBeInstanceOf(CallError)
    expect(error).toMatchObject({ module: "widgets", rpc: "widgets.get", kind: "NotSent", reason: "Refused" })
    expect((error as Error).message).toMatch(/refused the connection: the service credential was refused \(every process needs the same TESSERA_SERVICE_SECRET\)/)
    await Effect.runPromise(Scope.close(other, Exit.void))
  })

  it("renews its credential on the open connection before it expires", async () => {
    const other = await Effect.runPromise(Scope.make())
    const { client: shortLived, opened } = await connect(other, server.url, { credentialSeconds: 2 })
    expect((await Effect.runPromise(shortLived.get({ id: "early" }))).id).toBe("early")
    await new Promise((resolve) => setTimeout(resolve, 2_500))
    expect((await Effect.runPromise(shortLived.get({ id: "late" }))).id).toBe("late")
    expect(opened).toEqual([true])
    await Effect.runPromise(Scope.close(other, Exit.void))
  })
})

describe("the lane when the peer comes and goes", () => {
  it("fails calls fast while the peer is down, and succeeds again once it is back", async () => {
    const port = await freePort()
    const scope = await Effect.runPromise(Scope.make())
    const { client, opened } = await connect(scope, `http://127.0.0.1:${port}`)
    const started = Date.now()
    const error = Option.getOrUndefined(failure(await Effect.runPromiseExit(client.get({ id: "w" }))))
    expect(error).toBeInstanceOf(CallError)
    expect(error).toMatchObject({ kind: "NotSent", reason: "Unreachable" })
    expect(Date.now() - started).toBeLessThan(1_000)

    const server = await serve(port)
    await until(async () => Exit.isSuccess(await Effect.runPromiseExit(client.get({ id: "back" }))))
    expect(opened).toEqual([true])
    await server.close()
    await until(() => opened.length === 2)
    expect(opened).toEqual([true, false])
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("on shutdown, answers the calls in flight and refuses new ones without running them, or sending them once it said so", async () => {
    const server = await serve(0)
    const scope = await Effect.runPromise(Scope.make())
    const { client } = await connect(scope, server.url)
    const inFlight = Effect.runPromiseExit(client.slow({ ms: 400 }))
    await new Promise((resolve) => setTimeout(resolve, 50))
    const closing = server.close()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const refused = Option.getOrUndefined(failure(await Effect.runPromiseExit(client.slow({ ms: 1 }))))
    expect(refused).toBeInstanceOf(CallError)
    expect(refused).toMatchObject({ kind: "NotSent", reason: "ShuttingDown" })
    expect((refused as Error).message).toMatch(/widgets\.slow was not run: widgets is shutting down/)
    // Told so once, the client sends it no further call (a pool sends them to another instance)...
    const held = Option.getOrUndefined(failure(await Effect.runPromiseExit(client.slow({ ms: 2 }))))
    expect(held).toMatchObject({ kind: "NotSent", reason: "ShuttingDown" })
    expect((held as Error).message).toMatch(/widgets\.slow was not run: widgets at ws:\/\/127\.0\.0\.1:\d+\/rpc\/widgets is shutting down/)
    // ...while the calls in flight on the connection are still answered.
    expect(await inFlight).toEqual(Exit.succeed(400))
    await closing
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("refuses, unrun, the calls beyond a connection's limit of calls in flight", async () => {
    const server = await serve(0, { maxInFlight: 2 })
    const scope = await Effect.runPromise(Scope.make())
    const { client } = await connect(scope, server.url)
    const exits = await Promise.all([300, 301, 302].map((ms) => Effect.runPromiseExit(client.slow({ ms }))))
    expect(exits.slice(0, 2)).toEqual([Exit.succeed(300), Exit.succeed(301)])
    const refused = Option.getOrUndefined(failure(exits[2]!))
    expect(refused).toBeInstanceOf(CallError)
    expect(refused).toMatchObject({ kind: "NotSent", reason: "Overloaded" })
    expect((refused as Error).message).toMatch(/widgets\.slow was not run: widgets has 2 calls in flight/)
    expect(await Effect.runPromise(client.slow({ ms: 1 }))).toBe(1)
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await server.close()
  })

  it("fails a call whose connection drops OutcomeUnknown/ConnectionLost: it may have run", async () => {
    const server = await serve(0, { grace: "50 millis" })
    const scope = await Effect.runPromise(Scope.make())
    const { client } = await connect(scope, server.url)
    const inFlight = Effect.runPromiseExit(client.slow({ ms: 5_000 }))
    await new Promise((resolve) => setTimeout(resolve, 50))
    await server.close()
    const error = Option.getOrUndefined(failure(await inFlight))
    expect(error).toBeInstanceOf(CallError)
    expect(error).toMatchObject({ kind: "OutcomeUnknown", reason: "ConnectionLost" })
    expect((error as Error).message).toMatch(/lost before widgets\.slow was answered: it may or may not have run/)
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })
})

