/**
 * The gateway gives each request a deadline (`TESSERA_REQUEST_DEADLINE`): a module call still
 * running when it passes is interrupted, and the request is answered 504 with a problem that
 * names the module and says the request may have been carried out.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpServer } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Deferred, Duration, Effect, Layer, Schema } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Deadline from "../transport/Deadline.ts"
import * as LocalClient from "../transport/LocalClient.ts"
import * as Auth from "./Auth.ts"
import * as Edge from "./Edge.ts"
import * as Gateway from "./Gateway.ts"

class SlowRpcs extends RpcGroup.make(
  Rpc.make("hang"),
  /** The milliseconds left of the handler's deadline. */
  Rpc.make("left", { success: Schema.Number })
) {}

const interrupted = Deferred.unsafeMake<void>(undefined as never)

const handlers = SlowRpcs.toLayer({
  hang: () => Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined)),
  left: () => Deadline.remaining
})

const Api = HttpApi.make(Gateway.API_ID).add(
  HttpApiGroup.make("slow")
    .add(HttpApiEndpoint.get("hang", "/v1/hang"))
    .add(HttpApiEndpoint.get("left", "/v1/left").addSuccess(Schema.Number))
)

const slowClient = Effect.map(Layer.build(handlers), (context) => LocalClient.make("slow", SlowRpcs, context))

const SlowHttp = HttpApiBuilder.group(Api, "slow", (h) =>
  Effect.map(slowClient, (slow) =>
    h.handle("hang", () => Gateway.orUnavailable(slow.hang()))
      .handle("left", () => Gateway.orUnavailable(slow.left()))))

const settings: Edge.Settings = {
  maxBodyBytes: 1024,
  rateLimit: 0,
  authRateLimit: 0,
  trustedProxies: 0,
  maxJsonDepth: 32,
  corsOrigins: [],
  requestDeadline: Duration.millis(300)
}

const { dispose, handler } = HttpApiBuilder.toWebHandler(
  Layer.mergeAll(
    HttpApiBuilder.api(Api).pipe(Layer.provide(SlowHttp), Layer.provide(Auth.layer)),
    HttpApiBuilder.middleware(Edge.middleware(settings, Edge.routesOf(Api))).pipe(Layer.provide(Auth.noAuthenticator)),
    HttpServer.layerContext
  )
)

describe("the edge's deadline", () => {
  afterAll(() => dispose())

  it("gives the request's module calls what is left of its deadline", async () => {
    const response = await handler(new Request("http://localhost/v1/left"))
    expect(response.status).toBe(200)
    const left = Number(await response.text())
    expect(left).toBeGreaterThan(0)
    expect(left).toBeLessThanOrEqual(300)
  })

  it("answers 504 when a module call outlives it, and interrupts the call", async () => {
    const response = await handler(new Request("http://localhost/v1/hang"))
    expect(response.status).toBe(504)
    expect(response.headers.get("content-type")).toBe("application/problem+json")
    expect(await response.json()).toEqual({
      type: "/problems/module-timed-out",
      title: "Gateway timeout",
      status: 504,
      detail: "the slow module did not answer in time; the request may have been carried out: check before trying again"
    })
    await Effect.runPromise(Deferred.await(interrupted))
  })
})
