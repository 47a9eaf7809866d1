/**
 * The end-to-end suite every topology runs (`suite`), whatever starts it: `tessera serve`
 * processes from this build (main.test.ts) or the containers of a compose topology
 * (main.containers.alone.test.ts), driven over HTTP (the gateway's REST API) and over typed RPC
 * (inventory's contract). A behaviour that holds in one topology only is a bug. It sits beside
 * main.ts rather than in runtime/testing because it uses modules' own contracts, which nothing
 * under runtime/ imports (ModuleBorder.ts).
 */
import { OpenApi } from "@effect/platform"
import type { RpcClient } from "@effect/rpc"
import { Cause, Effect, Exit, Redacted, Scope } from "effect"
import * as jose from "jose"
import * as http from "node:http"
import { describe, expect, it, beforeAll, afterAll } from "vitest"
import { InventoryRpcs, ReservationConflict, type ReservationId, StockInsufficient } from "./modules/inventory/index.ts"
import type { ProductId } from "./modules/catalog/index.ts"
import { modules } from "./main.ts"
import * as Gateway from "./runtime/gateway/Gateway.ts"
import * as Caller from "./runtime/security/Caller.ts"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import { CallError } from "./runtime/transport/CallError.ts"
import * as RemoteClient from "./runtime/transport/RemoteClient.ts"

/** The shared secret of the test deployments' processes. */
export const SECRET = Redacted.make("e2e-service-secret-e2e-service-secret")
export const ADMIN = { email: "admin@tessera.test", password: "admin-password-e2e" }
/**
 * Access tokens live this long here, so that a test can watch one expire; long enough that the
 * rate-limit test's burst of requests, slow on a loaded machine, does not outlive its token.
 */
export const TOKEN_TTL_SECONDS = 6
/** Requests per second per client. */
export const RATE_LIMIT = 40

/** What every process of a test deployment is given. */
export const settings = {
  TESSERA_SERVICE_SECRET: Redacted.value(SECRET),
  TESSERA_ADMIN_EMAIL: ADMIN.email,
  TESSERA_ADMIN_PASSWORD: ADMIN.password,
  // Test users need no costly hashes; the format records the cost, so this weakens nothing else.
  TESSERA_PASSWORD_HASH_COST: "10",
  TESSERA_ACCESS_TOKEN_TTL: `${TOKEN_TTL_SECONDS} seconds`,
  TESSERA_RATE_LIMIT: String(RATE_LIMIT),
  // Tests stand for many clients by sending X-Forwarded-For, as a proxy in front would.
  TESSERA_TRUSTED_PROXIES: "1"
}

/**
 * Every request to a gateway goes through this `fetch`: it checks each answer (status, headers,
 * body) against the OpenAPI document that gateway serves, so an undescribed answer fails its test.
 */
export const gatewayFetch = OpenApiConformance.checkedFetch()

/** The headers of an answer read with node:http, for `gatewayFetch.check`. */
export const headersOf = (response: http.IncomingMessage) => {
  const headers = new Headers()
  for (const [name, value] of Object.entries(response.headers)) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, one)
  }
  return headers
}

/** A client address of its own, so that one test's logins do not spend another's rate limit. */
export const someAddress = () => `198.51.100.${Math.floor(Math.random() * 254) + 1}, 10.0.0.${Math.floor(Math.random() * 254) + 1}`

/** Logs in at `gateway` and returns the access token. */
export const login = async (gateway: string, credentials: { email: string; password: string }) => {
  const response = await gatewayFetch(`${gateway}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": someAddress() },
    body: JSON.stringify(credentials)
  })
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { accessToken: string }).accessToken
}

export interface Deployment {
  /** Base URL of the process that hosts the gateway. */
  readonly gateway: string
  /** Base URL of the process that hosts catalog, as the tests reach it. */
  readonly catalog: string
  /** Base URL of the process that hosts inventory, as the tests reach it. */
  readonly inventory: string
  /**
   * Where the gateway reaches catalog and inventory (its `TESSERA_PEERS`), when not where the
   * tests do (containers: a name on their network): `local` when they share its process.
   */
  readonly routes?: { readonly catalog: string; readonly inventory: string }
  /** Every process of the deployment (a `tessera serve` process, a container). */
  readonly servers: ReadonlyArray<Server>
  readonly cleanup: () => Promise<void>
  /** Modules that run in a process of their own here: stop it, and start it again on its port. */
  readonly alone?: Partial<Record<"catalog" | "inventory" | "identity", Restartable>>
}

/** A process of a deployment, as the suite uses it (`Processes.Server` is one). */
export interface Server {
  /** What it has written to its standard output and error so far. */
  readonly output: () => string | Promise<string>
  /** Stops it with SIGTERM (killing it if it does not end); its exit code. */
  readonly stop: () => Promise<number | null>
}

export interface Restartable {
  readonly stop: () => Promise<void>
  readonly start: () => Promise<void>
}

export const json = async (response: Response) => ({ status: response.status, type: response.headers.get("content-type"), body: await response.json() as any })

/** The end-to-end suite against the deployment `start` brings up (and `cleanup` takes down). */
export const suite = (name: string, start: () => Promise<Deployment>) =>
describe(name, () => {
  let deployment: Deployment
  let scope: Scope.CloseableScope
  let inventory: RpcClient.RpcClient<typeof InventoryRpcs extends { requests: ReadonlyMap<string, infer R> } ? R : never, CallError>
  const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)
  const runExit = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromiseExit(effect)
  const unique = () => Math.random().toString(36).slice(2, 10)

  /** A user of the deployment, whose token is renewed before it expires. */
  const session = (credentials: { email: string; password: string }) => {
    let current: { token: string; at: number } | undefined
    return async () => {
      if (current === undefined || Date.now() - current.at > (TOKEN_TTL_SECONDS * 1000) / 2) {
        current = { token: await login(deployment.gateway, credentials), at: Date.now() }
      }
      return current.token
    }
  }
  const admin = session(ADMIN)

  /**
   * A request to the gateway: as the admin unless `as` says otherwise (`null`: no credential),
   * from a client address of its own unless `from` names one.
   */
  const api = async (
    route: string,
    init?: RequestInit & { json?: unknown; as?: (() => Promise<string>) | string | null; from?: string }
  ) => {
    const { as, from, json: body, ...rest } = init ?? {}
    const headers = new Headers(rest.headers)
    const who = as === undefined ? admin : as
    if (who !== null) headers.set("authorization", `Bearer ${typeof who === "string" ? who : await who()}`)
    headers.set("x-forwarded-for", from ?? someAddress())
    if (body !== undefined) headers.set("content-type", "application/json")
    const send = () =>
      gatewayFetch(`${deployment.gateway}${route}`, {
        ...rest,
        headers,
        ...(body !== undefined ? { method: rest.method ?? "POST", body: JSON.stringify(body) } : {})
      })
    // Most of the suite runs as the one admin, one client to the rate limiter, and can outrun
    // RATE_LIMIT: it waits as a well-behaved client does. The rate-limit tests use identities
    // of their own, which never wait.
    for (let tries = 1;; tries++) {
      const response = await send()
      if (response.status !== 429 || as !== undefined || tries === 5) return response
      await new Promise((resolve) => setTimeout(resolve, 1_000 * Number(response.headers.get("retry-after") ?? 1)))
    }
  }

  const createProduct = async (fields: Record<string, unknown> = {}) => {
    const response = await api("/v1/products", {
      json: { sku: `SKU-${unique()}`, name: "Widget", priceCents: 1299, currency: "EUR", ...fields }
    })
    expect(response.status).toBe(201)
    return (await response.json()) as { id: ProductId; sku: string; name: string }
  }

  beforeAll(async () => {
    deployment = await start()
    scope = await run(Scope.make())
    inventory = await run(
      Scope.extend(RemoteClient.make("inventory", InventoryRpcs, deployment.inventory, { secret: SECRET, caller: "e2e" }), scope)
    ) as any
  })

  afterAll(async () => {
    if (scope) await run(Scope.close(scope, Exit.void))
    for (const server of deployment?.servers ?? []) await server.stop()
    await deployment?.cleanup()
  })

  describe("products", () => {
    it("creates a product and reads it back", async () => {
      const created = await createProduct({ name: "Blue mug", description: "Holds tea", priceCents: 850, currency: "USD" })
      expect(created).toMatchObject({ name: "Blue mug", description: "Holds tea", priceCents: 850, currency: "USD" })
      const read = await json(await api(`/v1/products/${created.id}`))
      expect(read.status).toBe(200)
      expect(read.body).toEqual(created)
    })

    it("refuses a second product with the same SKU, and keeps the first", async () => {
      const first = await createProduct()
      const second = await json(await api("/v1/products", { json: { sku: first.sku, name: "Other", priceCents: 1, currency: "EUR" } }))
      expect(second.status).toBe(409)
      expect(second.type).toContain("application/problem+json")
      expect(second.body).toMatchObject({ type: "/problems/sku-taken", status: 409, sku: first.sku })
      expect((await json(await api(`/v1/products/${first.id}`))).body.name).toBe("Widget")
    })

    it("searches by text and pages with a cursor", async () => {
      const token = unique()
      const made = []
      for (let i = 0; i < 3; i++) made.push(await createProduct({ name: `Lamp ${token} ${i}` }))
      await createProduct({ name: "Unrelated" })
      const seen: Array<string> = []
      let cursor: string | null = null
      let pages = 0
      do {
        const query: string = `/v1/products?q=${token}&limit=2${cursor ? `&cursor=${cursor}` : ""}`
        const page = await json(await api(query))
        expect(page.status).toBe(200)
        seen.push(...page.body.items.map((p: { id: string }) => p.id))
        cursor = page.body.nextCursor
        pages++
      } while (cursor !== null && pages < 10)
      expect(pages).toBe(2)
      expect(seen).toEqual(made.map((p) => p.id))
    })

    it("matches % and _ literally in a search", async () => {
      const token = unique()
      await createProduct({ name: `100% ${token}` })
      await createProduct({ name: `100x ${token}` })
      const page = await json(await api(`/v1/products?q=${encodeURIComponent(`100% ${token}`)}`))
      expect(page.body.items.map((p: { name: string }) => p.name)).toEqual([`100% ${token}`])
    })
  })

  describe("bad input gets a problem response and stores nothing", () => {
    const expectProblem = async (response: Response, status: number, fields: ReadonlyArray<string> = []) => {
      const problem = await json(response)
      expect(problem.status).toBe(status)
      expect(problem.type).toContain("application/problem+json")
      expect(problem.body).toMatchObject({ status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) })
      expect(JSON.stringify(problem.body)).not.toMatch(/\bat .*\.ts:\d+|SELECT|INSERT/)
      for (const field of fields) {
        expect(problem.body.errors.map((e: { field: string }) => e.field)).toContain(field)
      }
      return problem.body
    }

    const countByToken = async (token: string) =>
      (await json(await api(`/v1/products?q=${token}`))).body.items.length

    it("malformed JSON", async () => {
      const token = unique()
      const response = await api("/v1/products", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: `{"sku":"${token}","name":`
      })
      expect((await expectProblem(response, 400)).type).toBe("/problems/malformed-body")
      expect(await countByToken(token)).toBe(0)
    })

    it("wrong types, named field by field", async () => {
      const token = unique()
      const body = await expectProblem(
        await api("/v1/products", { json: { sku: token, name: 42, priceCents: "12", currency: "EUR" } }),
        400,
        ["name", "priceCents"]
      )
      expect(body.type).toBe("/problems/validation")
      expect(await countByToken(token)).toBe(0)
    })

    it("missing fields", async () => {
      await expectProblem(await api("/v1/products", { json: { name: "No SKU" } }), 400, ["sku", "priceCents", "currency"])
    })

    it("values out of range: negative price, unknown currency, bad SKU", async () => {
      const token = unique()
      await expectProblem(
        await api("/v1/products", { json: { sku: `${token} has spaces`, name: token, priceCents: -5, currency: "XYZ" } }),
        400,
        ["sku", "priceCents", "currency"]
      )
      expect(await countByToken(token)).toBe(0)
    })

    it("negative and zero quantities", async () => {
      const product = await createProduct()
      for (const quantity of [-3, 0, 1.5, "7"]) {
        await expectProblem(await api(`/v1/products/${product.id}/stock`, { json: { quantity } }), 400, ["quantity"])
      }
      expect((await json(await api(`/v1/products/${product.id}/stock`))).body).toEqual({
        productId: product.id,
        available: 0,
        reserved: 0
      })
    })

    it("unknown ids", async () => {
      const unknown = "8d6f6f0e-1b0e-4c5e-9a51-6b2f4e1d2c3b"
      const body = await expectProblem(await api(`/v1/products/${unknown}`), 404)
      expect(body).toMatchObject({ type: "/problems/product-not-found", productId: unknown })
      await expectProblem(await api(`/v1/products/${unknown}/stock`), 404)
      await expectProblem(await api(`/v1/products/${unknown}/stock`, { json: { quantity: 5 } }), 404)
      await expectProblem(await api(`/v1/products/${unknown}/stock`), 404)
    })

    it("ids and query parameters that are not well formed", async () => {
      await expectProblem(await api("/v1/products/not-a-uuid"), 400, ["id"])
      await expectProblem(await api("/v1/products?limit=0"), 400, ["limit"])
      await expectProblem(await api("/v1/products?limit=ten"), 400, ["limit"])
      await expectProblem(await api("/v1/products?cursor=bogus"), 400, ["cursor"])
    })

    it("oversized bodies", async () => {
      const token = unique()
      const response = await api("/v1/products", {
        json: { sku: token, name: token, description: "x".repeat(2 * 1024 * 1024), priceCents: 1, currency: "EUR" }
      })
      expect((await expectProblem(response, 413)).type).toBe("/problems/payload-too-large")
      expect(await countByToken(token)).toBe(0)
    })

    it("unknown routes", async () => {
      expect((await expectProblem(await api("/v1/nothing-here"), 404)).type).toBe("/problems/route-not-found")
    })
  })

  describe("stock", () => {
    it("adds restocked units and reads them back", async () => {
      const product = await createProduct()
      const first = await json(await api(`/v1/products/${product.id}/stock`, { json: { quantity: 10 } }))
      expect(first.status).toBe(200)
      expect(first.body).toEqual({ productId: product.id, available: 10, reserved: 0 })
      await api(`/v1/products/${product.id}/stock`, { json: { quantity: 5 } })
      expect((await json(await api(`/v1/products/${product.id}/stock`))).body).toEqual({
        productId: product.id,
        available: 15,
        reserved: 0
      })
    })
  })

  describe("reservations over typed RPC", () => {
    // Reservations are the order saga's: these calls are made as the orders module makes them.
    const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Caller.asService("orders")(effect))
    const runExit = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromiseExit(Caller.asService("orders")(effect))
    const stockOf = async (id: ProductId) => (await json(await api(`/v1/products/${id}/stock`))).body

    const stocked = async (units: number) => {
      const product = await createProduct()
      expect((await api(`/v1/products/${product.id}/stock`, { json: { quantity: units } })).status).toBe(200)
      return product.id
    }

    it("reserves all lines or none", async () => {
      const [a, b] = [await stocked(5), await stocked(1)]
      const exit = await runExit(
        inventory.reserve({
          reservationId: `r-${unique()}` as ReservationId,
          lines: [{ productId: a, quantity: 2 }, { productId: b, quantity: 2 }]
        })
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
      expect(error?._tag === "Some" && error.value).toBeInstanceOf(StockInsufficient)
      expect(await stockOf(a)).toMatchObject({ available: 5, reserved: 0 })
      expect(await stockOf(b)).toMatchObject({ available: 1, reserved: 0 })
    })

    it("is idempotent by reservation id, and release and commit move the units", async () => {
      const product = await stocked(10)
      const reservationId = `r-${unique()}` as ReservationId
      const lines = [{ productId: product, quantity: 3 }] as const
      const first = await run(inventory.reserve({ reservationId, lines }))
      const again = await run(inventory.reserve({ reservationId, lines }))
      expect(again).toEqual(first)
      expect(await stockOf(product)).toMatchObject({ available: 7, reserved: 3 })

      const conflict = await runExit(inventory.reserve({ reservationId, lines: [{ productId: product, quantity: 4 }] }))
      expect(Exit.isFailure(conflict) && Cause.failureOption(conflict.cause).pipe((o) => o._tag === "Some" && o.value))
        .toBeInstanceOf(ReservationConflict)

      expect((await run(inventory.commit({ reservationId }))).status).toBe("committed")
      expect((await run(inventory.commit({ reservationId }))).status).toBe("committed")
      expect(await stockOf(product)).toMatchObject({ available: 7, reserved: 0 })

      const other = `r-${unique()}` as ReservationId
      await run(inventory.reserve({ reservationId: other, lines: [{ productId: product, quantity: 2 }] }))
      expect((await run(inventory.release({ reservationId: other }))).status).toBe("released")
      expect((await run(inventory.release({ reservationId: other }))).status).toBe("released")
      expect(await stockOf(product)).toMatchObject({ available: 7, reserved: 0 })
    })

    it("refuses a reserve that arrives after its release", async () => {
      const product = await stocked(2)
      const reservationId = `r-${unique()}` as ReservationId
      expect((await run(inventory.release({ reservationId }))).status).toBe("released")
      const late = await runExit(inventory.reserve({ reservationId, lines: [{ productId: product, quantity: 1 }] }))
      expect(Exit.isFailure(late)).toBe(true)
      expect(await stockOf(product)).toMatchObject({ available: 2, reserved: 0 })
    })

    it("never oversells: 50 concurrent reservations of 10 units reserve exactly 10", async () => {
      const product = await stocked(10)
      const exits = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          runExit(inventory.reserve({ reservationId: `c-${unique()}-${i}` as ReservationId, lines: [{ productId: product, quantity: 1 }] })))
      )
      const won = exits.filter(Exit.isSuccess).length
      const lost = exits.filter((exit) =>
        Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe((o) => o._tag === "Some" && o.value instanceof StockInsufficient)
      ).length
      expect(won).toBe(10)
      expect(lost).toBe(40)
      expect(await stockOf(product)).toMatchObject({ available: 0, reserved: 10 })
    })
  })

  describe("identity and the secure edge", () => {
    const password = "correct horse battery"
    const register = async (fields: Record<string, unknown> = {}) => {
      const email = `user-${unique()}@example.com`
      const response = await json(await api("/v1/auth/register", { as: null, json: { email, password, name: "Ana", ...fields } }))
      expect(response.status).toBe(201)
      expect(Object.keys(response.body).sort()).toEqual(["createdAt", "email", "id", "name", "role"])
      return response.body as { id: string; email: string; name: string; role: string; createdAt: string }
    }
    const customer = async () => {
      const user = await register()
      return { user, token: session({ email: user.email, password }) }
    }
    /**
     * A customer's token taken before this block's tests and used again after them, by when it
     * has expired (its last test waits only for what is left of TOKEN_TTL_SECONDS).
     */
    let expiring: { token: string; at: number; fresh: number }
    beforeAll(async () => {
      const token = await (await customer()).token()
      expiring = { token, at: Date.now(), fresh: (await api("/v1/me", { as: token })).status }
    })
    const problem = async (response: Response, status: number, type: string) => {
      const body = await json(response)
      expect(body.status).toBe(status)
      expect(body.type).toContain("application/problem+json")
      expect(body.body).toMatchObject({ status, type })
      expect(JSON.stringify(body.body)).not.toMatch(/\bat .*\.ts:\d+|SELECT|INSERT|scrypt\$/)
      return body.body
    }
    const unauthenticated = async (response: Response, detail: RegExp) => {
      expect(response.headers.get("www-authenticate")).toContain("Bearer")
      expect((await problem(response, 401, "/problems/unauthenticated")).detail).toMatch(detail)
    }
    const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

    it("registers a customer, logs in and reads itself; never logs the password", async () => {
      const user = await register({ name: "Bea" })
      expect(user).toMatchObject({ role: "customer", name: "Bea" })
      const login = await json(await api("/v1/auth/login", { as: null, json: { email: user.email.toUpperCase(), password } }))
      expect(login.status).toBe(200)
      expect(login.body).toMatchObject({ tokenType: "Bearer", expiresIn: TOKEN_TTL_SECONDS })
      const me = await json(await api("/v1/me", { as: login.body.accessToken }))
      expect(me.status).toBe(200)
      expect(me.body).toEqual({ kind: "user", id: user.id, email: user.email, name: "Bea", role: "customer", createdAt: user.createdAt })
      for (const server of deployment.servers) expect(await server.output()).not.toContain(password)
    })

    it("refuses a taken e-mail (in any case) and bad registrations, naming the fields", async () => {
      const user = await register()
      await problem(await api("/v1/auth/register", { as: null, json: { email: user.email.toUpperCase(), password, name: "X" } }), 409, "/problems/email-taken")
      const bad = await problem(await api("/v1/auth/register", { as: null, json: { email: "not-an-address", password: "short", name: "" } }), 400, "/problems/validation")
      expect(bad.errors.map((e: { field: string }) => e.field)).toEqual(expect.arrayContaining(["email", "password", "name"]))
    })

    it("answers a wrong password and an unknown e-mail alike", async () => {
      const user = await register()
      const wrong = await problem(await api("/v1/auth/login", { as: null, json: { email: user.email, password: "not the password" } }), 401, "/problems/invalid-credentials")
      const unknown = await problem(await api("/v1/auth/login", { as: null, json: { email: `nobody-${unique()}@example.com`, password } }), 401, "/problems/invalid-credentials")
      expect(unknown.detail).toBe(wrong.detail)
    })

    it("keeps product reads, register and login public, and every other /v1 route closed", async () => {
      const product = await createProduct()
      expect((await api(`/v1/products/${product.id}`, { as: null })).status).toBe(200)
      expect((await api("/v1/products", { as: null })).status).toBe(200)
      await unauthenticated(await api("/v1/me", { as: null }), /needs a credential/)
      await unauthenticated(await api(`/v1/products/${product.id}/stock`, { as: null }), /needs a credential/)
      await unauthenticated(await api(`/v1/products/${product.id}/stock`, { as: null, json: { quantity: 1 } }), /needs a credential/)
      await unauthenticated(await api("/v1/products", { as: null, json: { sku: `S-${unique()}`, name: "N", priceCents: 1, currency: "EUR" } }), /needs a credential/)
      await unauthenticated(await api("/v1/api-keys", { as: null }), /needs a credential/)
    })

    it("refuses malformed, forged, wrongly signed and alg-none tokens with 401", async () => {
      const token = await admin()
      const [header, payload, signature] = token.split(".") as [string, string, string]
      const claims = JSON.parse(Buffer.from(payload, "base64url").toString())
      const kid = JSON.parse(Buffer.from(header, "base64url").toString()).kid
      await unauthenticated(await api("/v1/me", { as: "not-a-token" }), /malformed/)
      await unauthenticated(await api("/v1/me", { headers: { authorization: "Basic YWRtaW46YWRtaW4=" }, as: null }), /Bearer/)
      // The payload changed under the original signature.
      const customerClaims = base64url({ ...claims, sub: crypto.randomUUID() })
      await unauthenticated(await api("/v1/me", { as: `${header}.${customerClaims}.${signature}` }), /signature/)
      // Signed by a key identity never had, under identity's key id.
      const { privateKey } = await jose.generateKeyPair("EdDSA", { crv: "Ed25519" })
      const forged = await new jose.SignJWT({ role: "admin" }).setProtectedHeader({ alg: "EdDSA", kid })
        .setSubject(claims.sub).setIssuer(claims.iss).setAudience(claims.aud).setExpirationTime("1h").sign(privateKey)
      await unauthenticated(await api("/v1/me", { as: forged }), /signature/)
      // alg: none, and HS256 keyed with identity's public key.
      await unauthenticated(await api("/v1/me", { as: `${base64url({ alg: "none", typ: "JWT", kid })}.${payload}.` }), /algorithm/)
      const jwks = await json(await api("/.well-known/jwks.json", { as: null }))
      const hs256 = await new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256", kid })
        .sign(new TextEncoder().encode(JSON.stringify(jwks.body.keys[0])))
      await unauthenticated(await api("/v1/me", { as: hs256 }), /algorithm/)
      // Nothing above was let through to create anything.
      expect((await api("/v1/me", { as: token })).status).toBe(200)
    })

    it("publishes only public keys, and a token from the previous key works after a rotation", async () => {
      const { token } = await customer()
      const before = await token()
      const jwks = await json(await api("/.well-known/jwks.json", { as: null }))
      expect(jwks.status).toBe(200)
      for (const key of jwks.body.keys) expect(key).not.toHaveProperty("d")
      const rotated = await json(await api("/v1/auth/signing-keys", { method: "POST" }))
      expect(rotated.status).toBe(201)
      const kidOf = (jwt: string) => jose.decodeProtectedHeader(jwt).kid
      expect(kidOf(before)).not.toBe(rotated.body.kid)
      // The old token still passes; a new one is signed with the new key and passes too.
      expect((await api("/v1/me", { as: before })).status).toBe(200)
      const after = await login(deployment.gateway, { email: (await json(await api("/v1/me", { as: before }))).body.email, password })
      expect(kidOf(after)).toBe(rotated.body.kid)
      expect((await api("/v1/me", { as: after })).status).toBe(200)
      const keys = (await json(await api("/.well-known/jwks.json", { as: null }))).body.keys.map((k: { kid: string }) => k.kid)
      expect(keys).toEqual(expect.arrayContaining([kidOf(before), rotated.body.kid]))
    })

    it("keeps product writes and restocking to admins: 403 for a customer, nothing stored", async () => {
      const { token } = await customer()
      const sku = `SKU-${unique()}`
      const created = await api("/v1/products", { as: token, json: { sku, name: "Nope", priceCents: 1, currency: "EUR" } })
      expect((await problem(created, 403, "/problems/forbidden")).detail).toMatch(/admin/)
      expect((await json(await api(`/v1/products?q=${sku}`))).body.items).toEqual([])
      const product = await createProduct()
      await problem(await api(`/v1/products/${product.id}/stock`, { as: token, json: { quantity: 5 } }), 403, "/problems/forbidden")
      const stock = await json(await api(`/v1/products/${product.id}/stock`, { as: token }))
      expect(stock).toMatchObject({ status: 200, body: { available: 0 } })
      await problem(await api("/v1/api-keys", { as: token, json: { name: "mine", role: "admin" } }), 403, "/problems/forbidden")
      await problem(await api("/v1/auth/signing-keys", { as: token, method: "POST" }), 403, "/problems/forbidden")
    })

    it("answers 404, not 403, for another user's data", async () => {
      const a = await customer()
      const b = await customer()
      expect((await json(await api(`/v1/users/${a.user.id}`, { as: a.token }))).body.id).toBe(a.user.id)
      const other = await problem(await api(`/v1/users/${b.user.id}`, { as: a.token }), 404, "/problems/user-not-found")
      const unknown = await problem(await api(`/v1/users/${crypto.randomUUID()}`, { as: a.token }), 404, "/problems/user-not-found")
      expect(Object.keys(other).sort()).toEqual(Object.keys(unknown).sort())
      expect((await json(await api(`/v1/users/${b.user.id}`))).body.id).toBe(b.user.id)
    })

    it("issues API keys that act with their role, shows a key once, and revokes it at once", async () => {
      const issued = await json(await api("/v1/api-keys", { json: { name: `ci-${unique()}`, role: "admin" } }))
      expect(issued.status).toBe(201)
      const key: string = issued.body.key
      expect(key).toMatch(/^tsk_/)
      const listed = await json(await api("/v1/api-keys"))
      expect(listed.body.map((k: { id: string }) => k.id)).toContain(issued.body.id)
      expect(JSON.stringify(listed.body)).not.toContain(key)

      const viaHeader = await api("/v1/products", {
        as: null,
        headers: { "x-api-key": key },
        json: { sku: `KEY-${unique()}`, name: "By key", priceCents: 5, currency: "EUR" }
      })
      expect(viaHeader.status).toBe(201)
      expect((await api("/v1/api-keys", { as: key })).status).toBe(200)

      const reader = await json(await api("/v1/api-keys", { json: { name: `reader-${unique()}`, role: "customer" } }))
      await problem(await api("/v1/products", { as: reader.body.key, json: { sku: `K-${unique()}`, name: "N", priceCents: 1, currency: "EUR" } }), 403, "/problems/forbidden")

      const revoked = await json(await api(`/v1/api-keys/${issued.body.id}`, { method: "DELETE" }))
      expect(revoked.status).toBe(200)
      expect(revoked.body.revokedAt).not.toBeNull()
      await unauthenticated(await api("/v1/api-keys", { as: key }), /key/)
      await unauthenticated(await api("/v1/products", { as: null, headers: { "x-api-key": key } }), /key/)
      await problem(await api(`/v1/api-keys/${crypto.randomUUID()}`, { method: "DELETE" }), 404, "/problems/api-key-not-found")
    })

    it("limits login attempts per client address: 429 with Retry-After, other addresses unaffected", async () => {
      const user = await register()
      const from = `203.0.113.${Math.floor(Math.random() * 254) + 1}`
      const statuses: Array<number> = []
      let retryAfter: string | null = null
      for (let i = 0; i < 15; i++) {
        const response = await api("/v1/auth/login", { as: null, from, json: { email: user.email, password: `guess-${i}-wrong` } })
        statuses.push(response.status)
        if (response.status === 429) {
          retryAfter = response.headers.get("retry-after")
          expect((await json(response)).body).toMatchObject({ type: "/problems/too-many-requests", status: 429 })
        }
      }
      expect(statuses.filter((s) => s === 401).length).toBeGreaterThan(0)
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10)
      expect(statuses.at(-1)).toBe(429)
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
      // Even the right password waits; another address logs in.
      expect((await api("/v1/auth/login", { as: null, from, json: { email: user.email, password } })).status).toBe(429)
      expect((await api("/v1/auth/login", { as: null, json: { email: user.email, password } })).status).toBe(200)
    })

    it("answers 429, without checking, an address that keeps presenting bad credentials", async () => {
      const from = `192.0.2.${Math.floor(Math.random() * 254) + 1}`
      const statuses: Array<number> = []
      // Past RATE_LIMIT refusals the next answer is 429, unless the bucket refilled meanwhile
      // (RATE_LIMIT a minute: a slow, loaded machine answering these one after another earns
      // a token back every 1.5 s), so it asks until 429, within twice the limit.
      for (let i = 0; i < 2 * RATE_LIMIT && statuses.at(-1) !== 429; i++) {
        statuses.push((await api("/v1/me", { as: null, from, headers: { "x-api-key": `tsk_guess${i}` } })).status)
      }
      expect(statuses.slice(0, RATE_LIMIT)).toEqual(Array(RATE_LIMIT).fill(401))
      expect(statuses.at(-1)).toBe(429)
      expect((await api("/v1/me", { as: null, headers: { "x-api-key": "tsk_guess" } })).status).toBe(401)
    })

    it("limits each client's request rate: 429 for the greedy one, others served", async () => {
      const product = await createProduct()
      // Bursts of 4, 8, then 12 × RATE_LIMIT requests at once, until the limiter answers 429:
      // on a loaded machine a burst can be answered slowly enough for the bucket (RATE_LIMIT a
      // second) to refill under it. Each with a token of its own, fresh; a burst may still
      // outlive it (TOKEN_TTL_SECONDS): a 401 answered after the token's last second is its
      // expiry, not the limiter's doing, and is set aside; any other answer must be 200 or 429.
      const greedy = await customer()
      const statuses: Array<number> = []
      for (let burst = 1; burst <= 3 && !statuses.includes(429); burst++) {
        const token = await login(deployment.gateway, { email: greedy.user.email, password })
        // (Its expiry is in whole seconds after its issue, just before now: up to 2 s sooner than now + TTL.)
        const expiresAt = Date.now() + (TOKEN_TTL_SECONDS - 2) * 1000
        const answers = await Promise.all(
          Array.from({ length: 4 * burst * RATE_LIMIT }, () =>
            api(`/v1/products/${product.id}/stock`, { as: token }).then((r) => ({ status: r.status, at: Date.now() })))
        )
        statuses.push(...answers.filter((a) => !(a.status === 401 && a.at >= expiresAt)).map((a) => a.status))
      }
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0)
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(RATE_LIMIT)
      expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
      expect((await api(`/v1/products/${product.id}/stock`)).status).toBe(200)
    })

    it("bounds request bodies on the auth routes too, and never quotes a password back", async () => {
      await problem(
        await api("/v1/auth/login", { as: null, json: { email: "a@b.co", password: "x".repeat(2 * 1024 * 1024) } }),
        413,
        "/problems/payload-too-large"
      )
      const long = `secret-${unique()}`.padEnd(300, "y")
      const tooLong = await api("/v1/auth/login", { as: null, json: { email: "a@b.co", password: long } })
      expect((await problem(tooLong, 400, "/problems/validation")).detail).not.toContain(long.slice(0, 20))
    })

    it("answers 413 to an oversized body sent in chunks (no Content-Length)", async () => {
      const { port } = new URL(deployment.gateway)
      const answer = await new Promise<{ status: number; headers: Headers; body: string }>((resolve, reject) => {
        const request = http.request(
          { host: "127.0.0.1", port, path: "/v1/auth/register", method: "POST", headers: { "content-type": "application/json", "transfer-encoding": "chunked" } },
          (response) => {
            answered = true
            let body = ""
            response.on("data", (chunk) => (body += chunk))
            response.on("end", () => resolve({ status: response.statusCode!, headers: headersOf(response), body }))
          }
        )
        // The rest of the body is refused once the answer is out: only a missing answer fails.
        let answered = false
        request.on("error", (error) => answered || reject(error))
        const chunk = "x".repeat(64 * 1024)
        let sent = 0
        request.write(`{"email":"chunked-${unique()}@example.com","name":"C","password":"`)
        // A chunk per turn of the event loop, as a streaming client sends, until the answer comes.
        const pump = () => {
          if (answered) return
          if (sent >= 3 * 1024 * 1024) return void request.end(`"}`)
          sent += chunk.length
          if (request.write(chunk)) setImmediate(pump)
          else request.once("drain", pump)
        }
        pump()
      })
      expect(answer.status).toBe(413)
      await gatewayFetch.check(deployment.gateway, { method: "POST", url: "/v1/auth/register", ...answer })
      expect(JSON.parse(answer.body)).toMatchObject({ type: "/problems/payload-too-large", status: 413 })
      expect((await api("/health/live", { as: null })).status).toBe(200)
    })

    it("sends security headers on every answer", async () => {
      for (const response of [await api("/v1/products", { as: null }), await api("/v1/me", { as: null }), await api("/v1/nothing")]) {
        expect(response.headers.get("x-content-type-options")).toBe("nosniff")
        expect(response.headers.get("x-frame-options")).toBe("DENY")
        expect(response.headers.get("content-security-policy")).toContain("default-src 'none'")
        expect(response.headers.get("referrer-policy")).toBe("no-referrer")
      }
      expect((await api("/v1/me")).headers.get("cache-control")).toBe("no-store")
    })

    it("answers every operation of its document as described, with no credential and with a refused one", async () => {
      const spec = (await json(await api("/openapi.json", { as: null }))).body
      let operations = 0
      for (const [template, item] of Object.entries<any>(spec.paths)) {
        const route = template.replace(/\{[^}]+\}/g, () => crypto.randomUUID())
        for (const [method, operation] of Object.entries<any>(item)) {
          const init = { method: method.toUpperCase(), ...(operation.requestBody ? { json: {} } : {}) }
          // Anonymous: public operations answer (here 200, 400 or 404), the others 401.
          const anonymous = await api(route, { ...init, as: null })
          if (operation.security.length > 0) expect(anonymous.status, `${method} ${template}`).toBe(401)
          // A refused credential is 401 on every operation, public ones too.
          expect((await api(route, { ...init, as: `tsk_refused${unique()}` })).status, `${method} ${template}`).toBe(401)
          operations++
        }
      }
      expect(operations).toBeGreaterThanOrEqual(13)
    })

    it("documents the security schemes in the OpenAPI document", async () => {
      const spec = (await json(await api("/openapi.json", { as: null }))).body
      expect(Object.values(spec.components.securitySchemes)).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ type: "http", scheme: "bearer" }),
          expect.objectContaining({ type: "apiKey", in: "header", name: "X-Api-Key" })
        ])
      )
      expect(spec.paths["/v1/products"].post.security.length).toBeGreaterThan(0)
      expect(spec.paths["/v1/products"].get.security ?? []).toEqual([])
      expect(spec.paths["/v1/products"].post.responses["403"]).toBeDefined()
    })

    it("refuses module calls without a valid service credential, and does nothing for them", async () => {
      const product = await createProduct()
      await api(`/v1/products/${product.id}/stock`, { json: { quantity: 3 } })
      const wrong = await run(
        Scope.extend(
          RemoteClient.make("inventory", InventoryRpcs, deployment.inventory, {
            secret: Redacted.make("not-the-deployments-secret-not-the-secret"),
            caller: "intruder"
          }),
          scope
        )
      )
      let exit: Exit.Exit<unknown, unknown> | undefined
      for (let i = 0; i < 20; i++) {
        exit = await runExit(wrong.reserve({ reservationId: `x-${unique()}` as ReservationId, lines: [{ productId: product.id, quantity: 1 }] }))
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
        // The socket may still be opening: wait for the peer's own answer.
        if (failure?._tag === "Some" && String((failure.value as Error).message).includes("refused")) break
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const failure = Exit.isFailure(exit!) ? Cause.failureOption(exit!.cause) : undefined
      expect(failure?._tag === "Some" && failure.value).toBeInstanceOf(CallError)
      expect(failure?._tag === "Some" && failure.value).toMatchObject({ kind: "NotSent", reason: "Refused" })
      expect(failure?._tag === "Some" && (failure.value as Error).message).toMatch(/refused.*service credential/)
      expect((await json(await api(`/v1/products/${product.id}/stock`))).body).toMatchObject({ available: 3, reserved: 0 })
    })

    it("refuses an expired token", async () => {
      expect(expiring.fresh).toBe(200)
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiring.at + (TOKEN_TTL_SECONDS + 1) * 1000 - Date.now())))
      await unauthenticated(await api("/v1/me", { as: expiring.token }), /expired/)
    }, 20_000)
  })

  describe("the process", () => {
    it("reports itself ready and says where each module runs", async () => {
      const ready = await json(await gatewayFetch(`${deployment.gateway}/health/ready`))
      expect(ready.status).toBe(200)
      const where = Object.fromEntries(ready.body.modules.map((m: { name: string; location: string }) => [m.name, m.location]))
      const routes = deployment.routes ?? {
        catalog: deployment.catalog === deployment.gateway ? "local" : deployment.catalog,
        inventory: deployment.inventory === deployment.gateway ? "local" : deployment.inventory
      }
      expect(where.catalog).toBe(routes.catalog)
      expect(where.inventory).toBe(routes.inventory)
    })

    it("serves its OpenAPI document and docs page", async () => {
      const spec = await json(await gatewayFetch(`${deployment.gateway}/openapi.json`))
      expect(spec.status).toBe(200)
      expect(Object.keys(spec.body.paths)).toEqual(
        expect.arrayContaining(["/v1/products", "/v1/products/{id}", "/v1/products/{id}/stock"])
      )
      expect(spec.body.paths["/v1/products/{id}"].get.responses["404"].content["application/problem+json"]).toBeDefined()
      // The very document runtime/gateway/OpenApi.test.ts validates, built from the same definitions.
      const built = OpenApi.fromApi(Gateway.api(modules.filter((m) => m.http !== undefined)))
      expect(spec.body).toEqual(JSON.parse(JSON.stringify(built)))
      const docs = await gatewayFetch(`${deployment.gateway}/docs`)
      expect(docs.status).toBe(200)
      expect(docs.headers.get("content-type")).toContain("text/html")
    })

    it("answers 503 while a module it needs is down, and recovers when it is back", async (context) => {
      const alone = deployment.alone
      if (alone === undefined) return context.skip("every module runs in the gateway's process here")
      const product = await createProduct()
      const unavailable = async (route: string, init?: RequestInit & { json?: unknown; as?: null }) => {
        const response = await json(await api(route, init))
        expect(response.status).toBe(503)
        expect(response.body).toMatchObject({ type: "/problems/module-unavailable", status: 503 })
      }
      // The calls that failed meanwhile may have opened the gateway's breaker for the module:
      // it lets a probe through TESSERA_BREAKER_OPEN_FOR (5 s) later, so allow for that too.
      const recovered = async (route: string, as?: null) => {
        let status = 0
        for (let i = 0; i < 100 && status !== 200; i++) {
          status = (await api(route, as === undefined ? {} : { as })).status
          if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 200))
        }
        expect(status).toBe(200)
      }
      if (alone.inventory) {
        await alone.inventory.stop()
        await unavailable(`/v1/products/${product.id}/stock`)
        expect((await gatewayFetch(`${deployment.gateway}/health/ready`)).status).toBe(503)
        await alone.inventory.start()
        await recovered(`/v1/products/${product.id}/stock`)
      }
      if (alone.identity) {
        const token = await admin()
        await alone.identity.stop()
        await unavailable("/v1/auth/login", { as: null, json: ADMIN })
        // Access tokens are checked in the gateway against keys it already holds.
        expect((await api(`/v1/products/${product.id}/stock`, { as: token })).status).toBe(200)
        await alone.identity.start()
        await recovered("/.well-known/jwks.json", null)
      }
      if (alone.catalog) {
        await alone.catalog.stop()
        await unavailable(`/v1/products/${product.id}`)
        // Through inventory, which cannot reach the catalog to check the product.
        await unavailable(`/v1/products/${product.id}/stock`, { json: { quantity: 1 } })
        await alone.catalog.start()
        await recovered(`/v1/products/${product.id}`)
      }
    }, 120_000)

    // All at once, as an orchestrator stops a deployment; each may take its grace period
    // (TESSERA_SHUTDOWN_GRACE, 10 s) for calls in flight, and a container 30 s before SIGKILL.
    it("stops cleanly on SIGTERM", async () => {
      expect(await Promise.all(deployment.servers.map((server) => server.stop()))).toEqual(deployment.servers.map(() => 0))
    }, 90_000)
  })
})
