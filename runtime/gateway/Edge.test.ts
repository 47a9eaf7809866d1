/**
 * The edge's own pieces on an API of the test's own (the build's API is swept end to end in
 * main.edge.test.ts): which route a request reaches, and how deep a body nests.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Auth from "./Auth.ts"
import * as Edge from "./Edge.ts"

const Api = HttpApi.make("edge-test").add(
  HttpApiGroup.make("things")
    .add(HttpApiEndpoint.get("list", "/v1/things"))
    .add(HttpApiEndpoint.post("create", "/v1/things").setPayload(Schema.Struct({ name: Schema.String })))
    .add(HttpApiEndpoint.get("get")`/v1/things/${HttpApiSchema.param("id", Schema.String)}`)
    .add(HttpApiEndpoint.del("remove")`/v1/things/${HttpApiSchema.param("id", Schema.String)}`)
    .add(
      HttpApiEndpoint.post("login", "/v1/auth/login")
        .annotate(Auth.CredentialExchange, true)
        .setPayload(Schema.Struct({ secret: Schema.String }))
    )
)

describe("Edge.routesOf", () => {
  const routes = Edge.routesOf(Api)

  it("finds the route a request reaches, with what the edge decides from", () => {
    expect(routes.find("POST", "/v1/auth/login")).toMatchObject({ path: "/v1/auth/login", exchangesCredentials: true, takesBody: true })
    expect(routes.find("POST", "/v1/things")).toMatchObject({ exchangesCredentials: false, takesBody: true })
    expect(routes.find("DELETE", "/v1/things/1")).toMatchObject({ path: "/v1/things/:id", takesBody: false })
  })

  it("finds it however the router would: encoded letters, matrix parameters, absolute form", () => {
    for (const target of ["/v1/%61uth/login", "/v1/auth/login;x=1", "/v1/auth/login?x=1", "http://x/v1/auth/login"]) {
      expect(routes.find("POST", target)?.path).toBe("/v1/auth/login")
    }
  })

  it("matches case and slashes exactly, and no empty parameter", () => {
    for (const target of ["/V1/AUTH/LOGIN", "//v1/auth/login", "/v1//auth/login", "/v1/auth/login/", "/v1/./auth/login"]) {
      expect(routes.find("POST", target)).toBeUndefined()
    }
    expect(routes.find("GET", "/v1/things/")).toBeUndefined()
    expect(routes.emptyParameter("/v1/things/")).toBe(true)
    expect(routes.emptyParameter("/v1/things/1")).toBe(false)
  })

  it("lists a path's methods: HEAD with GET, OPTIONS always; none for an unknown path", () => {
    expect(routes.allowed("/v1/things")).toEqual(["GET", "HEAD", "POST", "OPTIONS"])
    expect(routes.allowed("/v1/things/1")).toEqual(["GET", "HEAD", "DELETE", "OPTIONS"])
    expect(routes.allowed("/v1/auth/login")).toEqual(["POST", "OPTIONS"])
    expect(routes.allowed("/v1/nothing")).toEqual([])
    expect(routes.find("HEAD", "/v1/things")?.method).toBe("GET")
  })
})

describe("Edge.nestsDeeperThan", () => {
  it("counts arrays and objects outside strings only", () => {
    expect(Edge.nestsDeeperThan(`{"a":[[1]]}`, 3)).toBe(false)
    expect(Edge.nestsDeeperThan(`{"a":[[[1]]]}`, 3)).toBe(true)
    expect(Edge.nestsDeeperThan(`{"a":"[[[[\\"[[[["}`, 1)).toBe(false)
    expect(Edge.nestsDeeperThan(`[{}, {}, {}, {}]`, 2)).toBe(false)
    expect(Edge.nestsDeeperThan("[".repeat(100_000), 32)).toBe(true)
  })
})
