/**
 * The checks a module's handler makes on its caller, and the service identity: a module calling
 * on its own account is allowed what a check names it for, and never comes from a credential
 * presented at the gateway.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpServer, Headers } from "@effect/platform"
import { RpcClient } from "@effect/rpc"
import { Duration, Effect, Either, Layer, Redacted, Schema } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Auth from "../gateway/Auth.ts"
import * as Edge from "../gateway/Edge.ts"
import * as Gateway from "../gateway/Gateway.ts"
import * as Caller from "./Caller.ts"

const headersOf = (caller: Caller.Caller | undefined) => Headers.fromInput(caller === undefined ? {} : Caller.toHeaders(caller))
const customer = new Caller.Caller({ kind: "user", id: "orders", role: "customer" })
const admin = new Caller.Caller({ kind: "apiKey", id: "k-1", role: "admin" })

const outcome = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.runSync(Effect.either(effect).pipe(Effect.map(Either.mapLeft((error) => (error as { _tag: string })._tag))))

describe("Caller", () => {
  it("a service is a named module with the customer's role", () => {
    const orders = Caller.service("orders")
    expect({ kind: orders.kind, id: orders.id, role: orders.role }).toEqual({ kind: "service", id: "orders", role: "customer" })
    expect(orders.isAdmin).toBe(false)
    // It travels between modules like any caller.
    expect(Caller.fromHeaders(headersOf(orders))).toEqual(Caller.fromHeaders(headersOf(Caller.service("orders"))))
    expect(Caller.fromHeaders(headersOf(orders))._tag).toBe("Some")
  })

  it("requireAdminOrService lets admins and the named modules through, no one else", () => {
    const check = (caller: Caller.Caller | undefined) =>
      outcome(Effect.map(Caller.requireAdminOrService(headersOf(caller), "orders"), (c) => c.id))
    expect(check(admin)).toEqual(Either.right("k-1"))
    expect(check(Caller.service("orders"))).toEqual(Either.right("orders"))
    expect(check(Caller.service("payments"))).toEqual(Either.left("Forbidden"))
    // A user whose id happens to be a module's name is still a user.
    expect(check(customer)).toEqual(Either.left("Forbidden"))
    expect(check(undefined)).toEqual(Either.left("Unauthenticated"))
  })

  it("requireAdmin refuses a service, requireCaller takes anyone known", () => {
    expect(outcome(Caller.requireAdmin(headersOf(Caller.service("orders"))))).toEqual(Either.left("Forbidden"))
    expect(outcome(Caller.requireAdmin(headersOf(admin)))._tag).toBe("Right")
    expect(outcome(Caller.requireCaller(headersOf(customer)))._tag).toBe("Right")
    expect(outcome(Caller.requireCaller(headersOf(undefined)))).toEqual(Either.left("Unauthenticated"))
  })

  it("asService makes the calls inside carry the service, whoever called", () => {
    const carried = Effect.map(RpcClient.currentHeaders, (headers) => Caller.fromHeaders(headers))
    const seen = Effect.runSync(Caller.withCaller(customer)(Caller.asService("orders")(carried)))
    expect(seen._tag === "Some" && seen.value.kind === "service" && seen.value.id === "orders").toBe(true)
    // And only inside.
    const after = Effect.runSync(Caller.withCaller(customer)(Effect.zipRight(Caller.asService("orders")(Effect.void), carried)))
    expect(after._tag === "Some" && after.value.kind).toBe("user")
  })
})

describe("the edge", () => {
  const Api = HttpApi.make(Gateway.API_ID).add(
    HttpApiGroup.make("who").add(HttpApiEndpoint.get("who", "/v1/who").addSuccess(Schema.String).middleware(Auth.Authenticated))
  )
  const WhoHttp = HttpApiBuilder.group(Api, "who", (h) => h.handle("who", () => Effect.map(Caller.CurrentCaller, (c) => c.kind)))
  // An authenticator that, wrongly, hands back whatever the token names.
  const authenticator = Layer.succeed(Auth.Authenticator, {
    authenticate: (credential) =>
      Effect.succeed(
        credential._tag === "Bearer" && Redacted.value(credential.token) === "service"
          ? Caller.service("orders")
          : customer
      ),
    checkedLocally: () => true
  })
  const settings: Edge.Settings = {
    maxBodyBytes: 1024,
    rateLimit: 0,
    authRateLimit: 0,
    trustedProxies: 0,
    maxJsonDepth: 32,
    corsOrigins: [],
    requestDeadline: Duration.seconds(5)
  }
  const { dispose, handler } = HttpApiBuilder.toWebHandler(
    Layer.mergeAll(
      HttpApiBuilder.api(Api).pipe(Layer.provide(WhoHttp), Layer.provide(Auth.layer)),
      HttpApiBuilder.middleware(Edge.middleware(settings, Edge.routesOf(Api))).pipe(Layer.provide(authenticator)),
      HttpServer.layerContext
    )
  )
  afterAll(() => dispose())

  it("refuses a credential that would make the caller a service", async () => {
    const as = (token: string) => handler(new Request("http://localhost/v1/who", { headers: { authorization: `Bearer ${token}` } }))
    const user = await as("anything")
    expect([user.status, await user.json()]).toEqual([200, "user"])
    const service = await as("service")
    expect(service.status).toBe(401)
  })
})
