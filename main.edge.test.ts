/**
 * The edge of this build's API, swept route by route: every endpoint of the composed HttpApi is
 * enumerated from its definition, so a route added later joins every sweep. One process is
 * hosted in the test's own process (`Host.serve`, the same node:http server `tessera serve`
 * runs) and driven over real sockets: path spellings, methods, content types, deep bodies, bad
 * credentials from a shared address, slow and greedy clients. The sweeps' answers to canonical
 * paths are checked against the served OpenAPI document too (`OpenApiConformance`).
 */
import { HttpApi } from "@effect/platform"
import { ConfigProvider, Effect, Either, Fiber, Layer, Logger, LogLevel, Option } from "effect"
import * as http from "node:http"
import * as net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "./main.ts"
import * as Gateway from "./runtime/gateway/Gateway.ts"
import * as Host from "./runtime/Host.ts"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as Topology from "./runtime/Topology.ts"

const ADMIN = { email: "admin@edge.test", password: "admin-password-edge" }
const AUTH_RATE_LIMIT = 2
const RATE_LIMIT = 100
const MAX_CONNECTIONS_PER_ADDRESS = 16
const HEADERS_TIMEOUT_MS = 1_000
const REQUEST_TIMEOUT_MS = 2_000
const MAX_JSON_DEPTH = 32
const SHOP = "https://shop.example"

/** Every endpoint of the build's API, from its definition. */
const endpoints: Array<{ method: string; path: string; takesBody: boolean }> = []
HttpApi.reflect(Gateway.api(modules.filter((m) => m.http !== undefined)), {
  onGroup: () => {},
  onEndpoint: ({ endpoint }) =>
    endpoints.push({ method: endpoint.method, path: endpoint.path, takesBody: Option.isSome(endpoint.payloadSchema) })
})
/** A path of the route with its parameters filled in (every id of this API is a UUID). */
const concrete = (path: string) => path.replace(/:\w+/g, "00000000-0000-4000-8000-000000000000")
const writes = endpoints.filter((e) => e.takesBody)
/** Every endpoint whose method carries a body, whether it reads one or not. */
const withBodies = endpoints.filter((e) => ["POST", "PUT", "PATCH", "DELETE"].includes(e.method))
const paths = [...new Set(endpoints.map((e) => concrete(e.path)))]
const methodsOf = (path: string) => endpoints.filter((e) => concrete(e.path) === path).map((e) => e.method)

let port = 0
let nextAddress = 0
/** A client address of its own (the server trusts one proxy), so no test spends another's limits. */
const someAddress = () => {
  nextAddress++
  return `10.${(nextAddress >> 16) & 255}.${(nextAddress >> 8) & 255}.${nextAddress & 255}`
}

interface Answer {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}
const json = (answer: Answer) => JSON.parse(answer.body) as Record<string, any>

let document: OpenApiConformance.Checker | undefined
/** Checks an answer to a canonical path against the served document: an undescribed one throws. */
const conforms = async (method: string, target: string, answer: Answer) => {
  document ??= OpenApiConformance.make(await (await fetch(`http://127.0.0.1:${port}/openapi.json`)).json())
  const headers = new Headers()
  for (const [name, value] of Object.entries(answer.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value)
  }
  document.check({ method, url: target, status: answer.status, headers, body: answer.body })
}

const agent = new http.Agent({ keepAlive: false, maxSockets: 8 })

/** Sends one request with `target` written as is in the request line. */
const send = (
  method: string,
  target: string,
  options: { headers?: Record<string, string>; body?: string | ReadonlyArray<string>; localAddress?: string } = {}
) =>
  new Promise<Answer>((resolve, reject) => {
    const request = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path: target,
        headers: {
          "x-forwarded-for": someAddress(),
          // Node sends no length for a DELETE's body unless told.
          ...(typeof options.body === "string" ? { "content-length": String(Buffer.byteLength(options.body)) } : {}),
          ...options.headers
        },
        agent: options.localAddress === undefined ? agent : false,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress })
      },
      (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk) => (body += chunk))
        response.on("end", () => resolve({ status: response.statusCode!, headers: response.headers, body }))
      }
    )
    request.on("error", reject)
    if (typeof options.body === "string") request.end(options.body)
    else if (options.body !== undefined) {
      // Sent in chunks (no Content-Length); the server may answer before reading them all.
      for (const chunk of options.body) request.write(chunk)
      request.end()
    } else request.end()
  })

/** A raw TCP connection from `localAddress`, collecting what the server writes. */
const connect = (localAddress: string) =>
  new Promise<{ socket: net.Socket; received: () => string; closed: Promise<number> }>((resolve, reject) => {
    let received = ""
    const socket = net.connect({ host: "127.0.0.1", port, localAddress })
    socket.setEncoding("utf8")
    socket.on("data", (chunk) => (received += chunk))
    socket.on("error", () => {})
    const closed = new Promise<number>((done) => socket.once("close", () => done(Date.now())))
    socket.once("connect", () => resolve({ socket, received: () => received, closed }))
    socket.once("error", reject)
  })

const login = async () => {
  const answer = await send("POST", "/v1/auth/login", {
    headers: { "content-type": "application/json" },
    body: JSON.stringify(ADMIN)
  })
  expect(answer.status).toBe(200)
  return json(answer).accessToken as string
}

const postgres = await Services.findPostgres()
const describeServed = postgres.ok ? describe : describe.skip

describeServed("the edge of this build's API, in process on PostgreSQL", () => {
  let drop: (() => Promise<void>) | undefined
  let server: Fiber.RuntimeFiber<never, unknown> | undefined
  let process_: Processes.Server | undefined

  beforeAll(async () => {
    if (!postgres.ok) return
    const db = await Services.createDatabase(postgres.value)
    drop = db.drop
    port = await Processes.freePort()
    const topology = Either.getOrThrow(Topology.resolve(Host.nodes(modules), { hosted: "all", peers: "" }))
    const settings: Record<string, string> = {
      PORT: String(port),
      DATABASE_URL: db.url,
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_RATE_LIMIT: String(RATE_LIMIT),
      TESSERA_AUTH_RATE_LIMIT: String(AUTH_RATE_LIMIT),
      TESSERA_TRUSTED_PROXIES: "1",
      TESSERA_HEADERS_TIMEOUT: `${HEADERS_TIMEOUT_MS} millis`,
      TESSERA_REQUEST_TIMEOUT: `${REQUEST_TIMEOUT_MS} millis`,
      TESSERA_MAX_CONNECTIONS_PER_ADDRESS: String(MAX_CONNECTIONS_PER_ADDRESS),
      TESSERA_CORS_ORIGINS: SHOP
    }
    // On Node the server runs in this process; TESSERA_TEST_RUNTIME=deno runs the release on Deno.
    if (Processes.RUNTIME === "deno") {
      process_ = Processes.spawnServer(port, settings)
    } else {
      server = Effect.runFork(
        Layer.launch(Host.serve(modules, topology)).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(settings)))),
          Logger.withMinimumLogLevel(LogLevel.None)
        )
      )
    }
    const deadline = Date.now() + 60_000
    for (;;) {
      const ready = await send("GET", "/health/ready").then((a) => a.status === 200, () => false)
      if (ready) break
      if (Date.now() > deadline) throw new Error(`the server did not become ready${process_ ? `:\n${process_.output()}` : ""}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }, 90_000)

  afterAll(async () => {
    if (server !== undefined) await Effect.runPromise(Fiber.interrupt(server))
    await process_?.stop()
    await drop?.()
  }, 30_000)

  it("the sweeps below see the API's routes", () => {
    expect(endpoints.length).toBeGreaterThan(10)
    expect(writes.length).toBeGreaterThan(3)
  })

  describe("every decision is the matched route's (defect 2)", () => {
    /** Three requests from a fresh address: the first answer, and whether the third was refused 429. */
    const probe = async (method: string, target: string) => {
      const headers: Record<string, string> = { "x-forwarded-for": someAddress() }
      const body = method === "POST" || method === "PUT" || method === "PATCH" ? "{}" : undefined
      if (body !== undefined) headers["content-type"] = "application/json"
      const first = await send(method, target, { headers, body })
      await send(method, target, { headers, body })
      const third = await send(method, target, { headers, body })
      const type = first.headers["content-type"] === "application/problem+json" ? json(first).type as string : ""
      return { status: first.status, type, cache: first.headers["cache-control"] ?? "", strict: third.status === 429 }
    }

    const variants: Record<string, (path: string) => string> = {
      "upper case": (p) => p.toUpperCase(),
      "first segment upper case": (p) => p.replace(/^\/(\w)/, (_, c: string) => `/${c.toUpperCase()}`),
      "leading double slash": (p) => `/${p}`,
      "inner double slash": (p) => p.replace(/^(\/[^/]+)\//, "$1//"),
      "trailing slash": (p) => `${p}/`,
      "percent-encoded letter": (p) => p.replace(/^(\/[^/]+\/)([a-z])/, (_, head: string, c: string) => `${head}%${c.charCodeAt(0).toString(16)}`),
      "percent-encoded letter, upper hex": (p) =>
        p.replace(/^(\/[^/]+\/)([a-z])/, (_, head: string, c: string) => `${head}%${c.charCodeAt(0).toString(16).toUpperCase()}`),
      "encoded slash": (p) => p.replace(/^(\/[^/]+)\//, "$1%2F"),
      "dot segment": (p) => p.replace(/^(\/[^/]+)\//, "$1/./"),
      "dot-dot segment": (p) => p.replace(/^(\/[^/]+)\//, "$1/x/../"),
      "absolute form": (p) => `http://x${p}`,
      "absolute form, https and port": (p) => `https://example.com:443${p}`,
      "matrix parameter": (p) => `${p};x=1`,
      "query": (p) => `${p}?x=1`
    }

    it("login and register are limited per address and never cached; other routes are not", async () => {
      for (const e of endpoints) {
        const canonical = await probe(e.method, concrete(e.path))
        const exchange = e.path === "/v1/auth/login" || e.path === "/v1/auth/register"
        expect({ route: `${e.method} ${e.path}`, strict: canonical.strict, noStore: canonical.cache === "no-store" })
          .toEqual({ route: `${e.method} ${e.path}`, strict: exchange, noStore: exchange })
      }
    }, 30_000)

    it("every route × every spelling of its path: refused, or the canonical route's status, limits and headers", async () => {
      const reached = new Set<string>()
      for (const e of endpoints) {
        const path = concrete(e.path)
        const canonical = await probe(e.method, path)
        const results = await Promise.all(
          Object.entries(variants).map(async ([name, variant]) => ({ name, target: variant(path), got: await probe(e.method, variant(path)) }))
        )
        for (const { got, name, target } of results) {
          if (name === "query") {
            expect({ target, ...got }).toEqual({ target, ...canonical })
          } else if (got.type !== "/problems/route-not-found" && got.type !== "/problems/method-not-allowed") {
            expect({ route: `${e.method} ${e.path}`, target, ...got }).toEqual({ route: `${e.method} ${e.path}`, target, ...canonical })
            reached.add(`${name}: ${e.method} ${e.path}`)
          }
        }
      }
      // Some spellings do reach the route (the router decodes and strips them): the sweep compared those.
      expect(reached).toContain("absolute form: POST /v1/auth/login")
      expect(reached).toContain("percent-encoded letter: POST /v1/auth/login")
      expect(reached).toContain("matrix parameter: POST /v1/auth/login")
    }, 60_000)
  })

  describe("methods and CORS (defect 17)", () => {
    it("every path × every method it does not define: 405 with the path's methods in Allow", async () => {
      for (const path of paths) {
        const defined = methodsOf(path)
        const allow = new Set([...defined, ...(defined.includes("GET") ? ["HEAD"] : []), "OPTIONS"])
        for (const method of ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].filter((m) => !allow.has(m))) {
          // A body of any type: the method is what is wrong.
          const answer = await send(method, path, { headers: { "content-type": "text/plain" }, body: "x" })
          expect({ path, method, status: answer.status }).toEqual({ path, method, status: 405 })
          expect(new Set(answer.headers["allow"]!.split(", "))).toEqual(allow)
          if (method !== "HEAD") expect(json(answer).type).toBe("/problems/method-not-allowed")
          if (method !== "HEAD") await conforms(method, path, answer)
        }
        const options = await send("OPTIONS", path)
        expect({ path, status: options.status }).toEqual({ path, status: 204 })
        expect(new Set(options.headers["allow"]!.split(", "))).toEqual(allow)
      }
    }, 30_000)

    it("answers the CORS preflight and requests of a configured origin only", async () => {
      const preflight = await send("OPTIONS", "/v1/products", {
        headers: { origin: SHOP, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" }
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers["access-control-allow-origin"]).toBe(SHOP)
      expect(preflight.headers["access-control-allow-methods"]).toContain("POST")
      expect(preflight.headers["access-control-allow-headers"]).toContain("authorization")
      expect(preflight.headers["access-control-allow-headers"]).toContain("content-type")

      const stranger = await send("OPTIONS", "/v1/products", {
        headers: { origin: "https://evil.example", "access-control-request-method": "POST" }
      })
      expect(stranger.headers["access-control-allow-origin"]).toBeUndefined()
      expect(stranger.headers["access-control-allow-methods"]).toBeUndefined()

      const get = await send("GET", "/v1/products", { headers: { origin: SHOP } })
      expect(get.status).toBe(200)
      expect(get.headers["access-control-allow-origin"]).toBe(SHOP)
      expect(get.headers["vary"]).toContain("Origin")
      const refused = await send("GET", "/v1/me", { headers: { origin: SHOP } })
      expect(refused.status).toBe(401)
      expect(refused.headers["access-control-allow-origin"]).toBe(SHOP)
      const other = await send("GET", "/v1/products", { headers: { origin: "https://evil.example" } })
      expect(other.headers["access-control-allow-origin"]).toBeUndefined()
      expect(other.headers["vary"]).toContain("Origin")
    })
  })

  describe("bodies: JSON only (defect 8), nested at most so deep (defect 6)", () => {
    const notJson: Record<string, { contentType?: string; body: string }> = {
      "text/plain": { contentType: "text/plain", body: JSON.stringify(ADMIN) },
      "a form": { contentType: "application/x-www-form-urlencoded", body: `email=${ADMIN.email}&password=${ADMIN.password}` },
      "multipart": {
        contentType: "multipart/form-data; boundary=b",
        body: `--b\r\ncontent-disposition: form-data; name=".."; filename="x"\r\n\r\nx\r\n--b--\r\n`
      },
      "no content type": { body: JSON.stringify(ADMIN) },
      "json named in a parameter": { contentType: "text/plain; x=application/json", body: "{}" },
      "a json-like type": { contentType: "application/jsonx", body: "{}" },
      "another charset": { contentType: "application/json; charset=latin1", body: "{}" }
    }

    it("every route whose method carries a body × every other content type: 415", async () => {
      expect(withBodies.length).toBeGreaterThan(writes.length)
      for (const e of withBodies) {
        for (const [name, { body, contentType }] of Object.entries(notJson)) {
          const answer = await send(e.method, concrete(e.path), {
            headers: contentType === undefined ? {} : { "content-type": contentType },
            body
          })
          expect({ route: `${e.method} ${e.path}`, name, status: answer.status }).toEqual({ route: `${e.method} ${e.path}`, name, status: 415 })
          expect(json(answer).type).toBe("/problems/unsupported-media-type")
          expect(answer.headers["content-type"]).toBe("application/problem+json")
          await conforms(e.method, concrete(e.path), answer)
        }
      }
    }, 30_000)

    it("JSON with a charset still passes; an HTML form cannot log in", async () => {
      const json = await send("POST", "/v1/auth/login", {
        headers: { "content-type": "Application/JSON; charset=UTF-8" },
        body: JSON.stringify(ADMIN)
      })
      expect(json.status).toBe(200)
      const form = await send("POST", "/v1/auth/login", {
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: `email=${encodeURIComponent(ADMIN.email)}&password=${ADMIN.password}`
      })
      expect(form.status).toBe(415)
    })

    it("a chunked multipart body over the size limit is 413 or 415, never 500", async () => {
      const chunk = "x".repeat(64 * 1024)
      for (const e of writes) {
        const answer = await send(e.method, concrete(e.path), {
          headers: { "content-type": "multipart/form-data; boundary=b" },
          body: [`--b\r\ncontent-disposition: form-data; name="f"; filename="f"\r\n\r\n`, ...Array(24).fill(chunk)]
        }).catch((error: Error) => ({ status: 0, headers: {}, body: error.message }))
        expect([413, 415]).toContain(answer.status)
        await conforms(e.method, concrete(e.path), answer)
      }
      const json = await send("POST", "/v1/auth/login", {
        headers: { "content-type": "application/json" },
        body: [`{"email":"`, ...Array(24).fill(chunk)]
      }).catch((error: Error) => ({ status: 0, headers: {}, body: error.message }))
      expect(json.status).toBe(413)
    }, 30_000)

    it("every route that takes a body, anonymous and as an admin: JSON nested too deep is a 400 validation problem", async () => {
      const token = await login()
      const deep = (levels: number) => "[".repeat(levels) + "]".repeat(levels)
      for (const e of writes) {
        for (const credential of [{}, { authorization: `Bearer ${token}` }]) {
          for (const body of [deep(3000), `{"name":${deep(MAX_JSON_DEPTH)}}`, `{"a":"[[[[\\"${"[".repeat(40)}",${deep(3000)}}`]) {
            const answer = await send(e.method, concrete(e.path), {
              headers: { "content-type": "application/json", ...credential },
              body
            })
            expect({ route: `${e.method} ${e.path}`, status: answer.status }).toEqual({ route: `${e.method} ${e.path}`, status: 400 })
            const problem = json(answer)
            expect(problem.type).toBe("/problems/validation")
            expect(problem.errors).toEqual([{ field: "", pointer: "", message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` }])
            await conforms(e.method, concrete(e.path), answer)
          }
        }
      }
    }, 30_000)

    it("a JSON body sent in chunks within the limit reaches its route whole", async () => {
      const body = JSON.stringify(ADMIN)
      const answer = await send("POST", "/v1/auth/login", {
        headers: { "content-type": "application/json" },
        body: [body.slice(0, 5), body.slice(5, 17), body.slice(17)]
      })
      expect(answer.status).toBe(200)
      expect(typeof json(answer).accessToken).toBe("string")
    })

    it("a connection answered before its body was read carries the client's next request: 413 declared or chunked, 415", async () => {
      const big = `"${"x".repeat(2 * 1024 * 1024)}"`
      // Within the size limit, but more than a connection buffers unread.
      const plain = "x".repeat(256 * 1024)
      const firsts = [
        `POST /v1/auth/login HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${big.length}\r\n\r\n${big}`,
        `POST /v1/auth/login HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n` +
        `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
        `POST /v1/auth/login HTTP/1.1\r\nHost: x\r\ncontent-type: text/plain\r\ncontent-length: ${plain.length}\r\n\r\n${plain}`
      ]
      const statuses: Array<Array<number>> = []
      for (const [i, first] of firsts.entries()) {
        // An address of its own: the chunked body is read after login's rate limit is taken.
        const { received, socket } = await connect(`127.0.0.${21 + i}`)
        socket.write(first)
        socket.write("GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        const heads = () => [...received().matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
        const deadline = Date.now() + 10_000
        while (heads().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
        socket.destroy()
        statuses.push(heads())
      }
      expect(statuses).toEqual([[413, 200], [413, 200], [415, 200]])
    }, 40_000)
  })

  describe("bad credentials from an address do not lock out its valid ones (defect 7)", () => {
    it("after a flood of bad tokens and keys, a valid token and a valid key from the same address are served", async () => {
      const token = await login()
      const created = await send("POST", "/v1/api-keys", {
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ name: "edge test", role: "customer" })
      })
      expect(created.status).toBe(201)
      const key = json(created).key as string
      // In use before the flood.
      expect((await send("GET", "/v1/products", { headers: { "x-api-key": key } })).status).toBe(200)

      const nat = someAddress()
      const from = (headers: Record<string, string>) => send("GET", "/v1/products", { headers: { ...headers, "x-forwarded-for": nat } })
      const flood = []
      for (let i = 0; i < RATE_LIMIT + 20; i++) {
        flood.push((await from(i % 2 === 0 ? { authorization: `Bearer bad.token.${i}` } : { "x-api-key": `tsk_bad${i}` })).status)
      }
      expect(flood.slice(-10)).toContain(429)
      // A bad key from the flooded address is refused without being checked.
      expect((await from({ "x-api-key": "tsk_bad-after" })).status).toBe(429)

      const me = await send("GET", "/v1/me", { headers: { authorization: `Bearer ${token}`, "x-forwarded-for": nat } })
      expect(me.status).toBe(200)
      expect((await from({ "x-api-key": key })).status).toBe(200)
      expect((await from({ authorization: `Bearer ${key}` })).status).toBe(200)
    }, 30_000)
  })

  describe("slow and greedy clients (defect 14)", () => {
    it("a client that sends its headers slowly is cut after the headers timeout, with a 408", async () => {
      const { closed, received, socket } = await connect("127.0.0.5")
      const opened = Date.now()
      socket.write("GET /health/live HTTP/1.1\r\nHost: x\r\n")
      const drip = setInterval(() => socket.writable && socket.write("x-drip: 1\r\n"), 200)
      const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 6_000))])
      clearInterval(drip)
      socket.destroy()
      expect(at).toBeGreaterThan(0)
      expect(at - opened).toBeLessThan(HEADERS_TIMEOUT_MS + 2_500)
      expect(received()).toMatch(/^HTTP\/1\.1 408 /)
      expect(received()).toContain("/problems/request-timeout")
    }, 10_000)

    it("a client that sends its body slowly is cut after the request timeout, with a 408", async () => {
      const { closed, received, socket } = await connect("127.0.0.8")
      const opened = Date.now()
      socket.write("POST /v1/auth/login HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
      const drip = setInterval(() => socket.writable && socket.write(" "), 200)
      const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 8_000))])
      clearInterval(drip)
      socket.destroy()
      expect(at).toBeGreaterThan(0)
      expect(at - opened).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100)
      expect(at - opened).toBeLessThan(REQUEST_TIMEOUT_MS + 2_500)
      expect(received()).toMatch(/^HTTP\/1\.1 408 /)
    }, 12_000)

    it("connections past the per-address cap are refused while another address is served", async () => {
      const held = await Promise.all(Array.from({ length: MAX_CONNECTIONS_PER_ADDRESS }, () => connect("127.0.0.6")))
      for (const c of held) c.socket.write("GET /health/live HTTP/1.1\r\nHost: x\r\n")
      const extra = await connect("127.0.0.6")
      const closedAt = await Promise.race([extra.closed, new Promise<number>((r) => setTimeout(() => r(-1), 3_000))])
      expect(closedAt).toBeGreaterThan(0)
      expect(extra.received()).toMatch(/^HTTP\/1\.1 429 /)
      expect(extra.received()).toContain("/problems/too-many-requests")
      const other = await send("GET", "/health/live", { localAddress: "127.0.0.7" })
      expect(other.status).toBe(200)
      for (const c of held) c.socket.destroy()
      // Once they are gone, the address is served again.
      await Promise.all(held.map((c) => c.closed))
      await new Promise((r) => setTimeout(r, 50))
      expect((await send("GET", "/health/live", { localAddress: "127.0.0.6" })).status).toBe(200)
    }, 10_000)

    it("headers over the size limit get a 431 problem", async () => {
      const answer = await send("GET", "/v1/products", { headers: { "x-big": "y".repeat(20 * 1024) } })
        .catch((error: Error) => ({ status: 0, headers: {} as http.IncomingHttpHeaders, body: error.message }))
      expect(answer.status).toBe(431)
      expect(answer.headers["content-type"]).toBe("application/problem+json")
      expect(json(answer).type).toBe("/problems/request-header-fields-too-large")
    })
  })
})
