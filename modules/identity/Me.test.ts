/**
 * `GET /v1/me` describes the caller, whoever it is: a user gets the user (`kind: "user"`), an API
 * key gets the key (`kind: "api-key"`: id, name, role, never the key itself), and the OpenAPI
 * document says so with a union told apart by `kind`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as TestServer from "../../runtime/testing/TestServer.ts"
import { IdentityModule } from "./IdentityModule.ts"

const ADMIN = { email: "me-admin@example.com", password: "admin password 1" }

describe("GET /v1/me", () => {
  let server: TestServer.TestServer | undefined
  beforeAll(async () => {
    server = await TestServer.startOnTestDatabase([IdentityModule], {
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_RATE_LIMIT: "0"
    })
  })
  afterAll(() => server?.close())

  const api = async (path: string, init: { token?: string; headers?: Record<string, string>; json?: unknown; method?: string } = {}) => {
    const response = await fetch(`${server!.url}${path}`, {
      method: init.method ?? (init.json === undefined ? "GET" : "POST"),
      headers: {
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
        ...(init.json === undefined ? {} : { "content-type": "application/json" }),
        ...init.headers
      },
      ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) })
    })
    return { status: response.status, body: await response.json() as Record<string, any> }
  }
  const login = async (credentials: { email: string; password: string }) =>
    (await api("/v1/auth/login", { json: credentials })).body.accessToken as string

  it("describes a user as the user", async () => {
    const registered = await api("/v1/auth/register", {
      json: { email: `me-${crypto.randomUUID()}@example.com`, password: "a good password", name: "Ana" }
    })
    const token = await login({ email: registered.body.email, password: "a good password" })
    expect(await api("/v1/me", { token })).toEqual({ status: 200, body: { kind: "user", ...registered.body } })
  })

  it("describes an API key as the key, by either header, and stops when it is revoked", async () => {
    const admin = await login(ADMIN)
    const issued = await api("/v1/api-keys", { token: admin, json: { name: "ci-reader", role: "customer" } })
    expect(issued.status).toBe(201)
    const { key, ...listed } = issued.body
    const expected = { status: 200, body: { kind: "api-key", ...listed } }
    expect(expected.body).toMatchObject({ id: expect.any(String), name: "ci-reader", role: "customer", revokedAt: null })
    expect(await api("/v1/me", { token: key })).toEqual(expected)
    expect(await api("/v1/me", { headers: { "x-api-key": key } })).toEqual(expected)
    expect(JSON.stringify((await api("/v1/me", { token: key })).body)).not.toContain(key.slice(4))

    await api(`/v1/api-keys/${listed.id}`, { token: admin, method: "DELETE" })
    expect((await api("/v1/me", { token: key })).status).toBe(401)
  })

  it("is documented as a user or an API key, told apart by kind", async () => {
    const spec = (await api("/openapi.json")).body
    const resolve = (schema: Record<string, any>): Record<string, any> =>
      typeof schema.$ref === "string"
        ? resolve(schema.$ref.split("/").slice(1).reduce((node: any, part: string) => node[decodeURIComponent(part.replace(/~1/g, "/").replace(/~0/g, "~"))], spec))
        : schema
    const success = resolve(spec.paths["/v1/me"].get.responses["200"].content["application/json"].schema)
    const members = (success.anyOf ?? success.oneOf).map(resolve)
    expect(members.map((m: any) => [resolve(m.properties.kind).enum ?? [resolve(m.properties.kind).const], m.required.includes("kind")]))
      .toEqual([[["user"], true], [["api-key"], true]])
    expect(Object.keys(members[1].properties)).toEqual(expect.arrayContaining(["id", "name", "role", "kind"]))
    expect(Object.keys(members[1].properties)).not.toContain("key")
  })
})
