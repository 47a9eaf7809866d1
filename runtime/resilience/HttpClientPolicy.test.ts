/**
 * `Policy.httpClient`: an outbound HTTP client under the same policy as module calls, against a
 * local server that answers as each test scripts it.
 */
import { FetchHttpClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Duration, Effect, Either } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import * as Environment from "../Environment.ts"
import * as Processes from "../testing/Processes.ts"
import * as Policy from "./Policy.ts"

/** What the server answers next, in order (0: nothing, ever); then 200. */
let script: Array<number> = []
let hits: Array<{ method: string; key: string | undefined }> = []
let server: http.Server
let url = ""

beforeAll(async () => {
  server = http.createServer((request, response) => {
    hits.push({ method: request.method!, key: request.headers["idempotency-key"] as string | undefined })
    const status = script.shift() ?? 200
    if (status === 0) return // never answers
    response.writeHead(status, status === 503 ? { "retry-after": "7", "content-type": "text/plain" } : { "content-type": "text/plain" })
    response.end(String(status))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))
beforeEach(() => {
  script = []
  hits = []
})

const policy: Policy.Policy = {
  ...Policy.defaults,
  retry: { ...Policy.defaults.retry, maxAttempts: 3, baseDelay: Duration.millis(1), maxDelay: Duration.millis(2) },
  breaker: { ...Policy.defaults.breaker, minimumCalls: 4, windowSize: 10, openFor: Duration.minutes(5) }
}

/** Runs `request` through a client wrapped for a fresh dependency (or `registry`'s). */
const send = (request: HttpClientRequest.HttpClientRequest, registry = new Policy.Registry()) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const client = (yield* HttpClient.HttpClient).pipe(Policy.httpClient(registry.dependency("payments", policy, "http")))
      return yield* Effect.either(Effect.flatMap(client.execute(request), (response) => Effect.map(response.text, (text) => ({ status: response.status, text }))))
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

describe("Policy.httpClient", () => {
  it("gives up an attempt the server never answers, within the attempt timeout, and tries again", async () => {
    script = [0, 0, 0]
    const quick: Policy.Policy = { ...policy, timeout: Duration.millis(200) }
    const result = await Effect.runPromise(
      Effect.gen(function*() {
        const client = (yield* HttpClient.HttpClient).pipe(Policy.httpClient(new Policy.Registry().dependency("payments", quick, "http")))
        return yield* Effect.either(client.get(`${url}/charges/slow`))
      }).pipe(Effect.provide(FetchHttpClient.layer))
    )
    expect(Either.getLeft(result).pipe((e) => e._tag === "Some" ? e.value : undefined)).toMatchObject({ kind: "TimedOut", reason: "Deadline" })
    expect(hits.length).toBe(3)
  })

  it("retries an idempotent request answered 503, 429 or 502, and returns the answer that follows", async () => {
    script = [503, 429, 200]
    expect(await send(HttpClientRequest.get(`${url}/charges/1`))).toEqual(Either.right({ status: 200, text: "200" }))
    expect(hits.length).toBe(3)
    script = [502, 200]
    expect(await send(HttpClientRequest.get(`${url}/charges/1`))).toEqual(Either.right({ status: 200, text: "200" }))
  })

  it("returns the server's own answers below 500 as they are, unretried", async () => {
    script = [404]
    expect(await send(HttpClientRequest.get(`${url}/charges/none`))).toEqual(Either.right({ status: 404, text: "404" }))
    expect(hits.length).toBe(1)
  })

  it("does not retry a POST without an idempotency key; with one it does, key and all", async () => {
    script = [503, 503, 503]
    const refused = await send(HttpClientRequest.post(`${url}/charges`))
    expect(Either.getLeft(refused).pipe((e) => e._tag === "Some" ? e.value : undefined)).toMatchObject({
      _tag: "CallError",
      kind: "NotSent",
      reason: "Overloaded",
      retryAfterMs: 7000
    })
    expect(hits.length).toBe(1)
    script = [503, 200]
    hits = []
    const keyed = await send(HttpClientRequest.post(`${url}/charges`).pipe(HttpClientRequest.setHeader("Idempotency-Key", "charge-42")))
    expect(keyed).toEqual(Either.right({ status: 200, text: "200" }))
    expect(hits).toEqual([{ method: "POST", key: "charge-42" }, { method: "POST", key: "charge-42" }])
  })

  it("maps a refused connection to NotSent/Unreachable, and stops calling once the breaker opens", async () => {
    const closed = `http://127.0.0.1:${await Processes.freePort()}`
    const registry = new Policy.Registry()
    const first = await send(HttpClientRequest.get(`${closed}/charges/1`), registry)
    expect(Either.getLeft(first).pipe((e) => e._tag === "Some" ? e.value : undefined)).toMatchObject({
      kind: "NotSent",
      reason: "Unreachable"
    })
    // Three attempts, then one more opens the breaker (four calls, all failed); the next is refused unsent.
    await send(HttpClientRequest.get(`${closed}/charges/1`), registry)
    const refused = await send(HttpClientRequest.get(`${url}/charges/1`), registry)
    expect(Either.getLeft(refused).pipe((e) => e._tag === "Some" ? e.value : undefined)).toMatchObject({ reason: "BreakerOpen" })
    expect(hits.length).toBe(0)
    const [view] = await Effect.runPromise(registry.views)
    expect(view).toMatchObject({ target: "payments", location: "http", breaker: { state: "Open" } })
  })

  it("httpClientFor takes the target's settings and registers it with the process's dependencies", async () => {
    const registry = new Policy.Registry()
    script = [503, 503]
    const result = await Effect.runPromise(
      Effect.gen(function*() {
        const withPolicy = yield* Policy.httpClientFor("payments", { retry: { baseDelay: Duration.millis(1), maxDelay: Duration.millis(2) } })
        const client = (yield* HttpClient.HttpClient).pipe(withPolicy)
        return yield* Effect.either(client.get(`${url}/charges/1`))
      }).pipe(
        Effect.provide(FetchHttpClient.layer),
        Effect.provideService(Policy.Dependencies, registry),
        Effect.withConfigProvider(Environment.configProvider({ TESSERA_PAYMENTS_CALL_RETRIES: "1" }))
      )
    )
    expect(Either.isLeft(result)).toBe(true)
    expect(hits.length).toBe(2)
    const [view] = await Effect.runPromise(registry.views)
    expect(view).toMatchObject({ target: "payments", location: "http", policy: { retry: { maxAttempts: 2 } } })
    expect(Policy.settingsFor("payments").map((s) => s.name)).toContain("TESSERA_PAYMENTS_CALL_TIMEOUT")
  })
})
