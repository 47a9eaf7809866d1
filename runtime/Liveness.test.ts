/**
 * `/health/live` answers 503 when a hosted module's connection pool is wedged (every connection
 * held, none changing hands, for `TESSERA_DB_STALL_TIMEOUT`), and 200 otherwise: a database that
 * is merely slow or down does not make the process look dead.
 */
import { HttpApi, HttpApiBuilder, HttpServer } from "@effect/platform"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import * as Health from "./Health.ts"

const liveness = async (stalls: Record<string, Duration.Duration>) => {
  const health = Health.routes({
    hosted: Object.entries(stalls).map(([name, stall]) => ({
      name,
      status: Effect.succeed({ ready: true, detail: "test" }),
      stall: Effect.succeed(stall)
    })),
    locations: new Map(),
    instances: () => []
  })
  const { dispose, handler } = HttpApiBuilder.toWebHandler(
    Layer.mergeAll(HttpApiBuilder.api(HttpApi.make("test")), health, HttpServer.layerContext).pipe(
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["TESSERA_DB_STALL_TIMEOUT", "10 seconds"]]))))
    )
  )
  try {
    const response = await handler(new Request("http://test/health/live"))
    return { status: response.status, body: await response.json() }
  } finally {
    await dispose()
  }
}

describe("liveness", () => {
  it("is 200 while every pool hands out connections, or has been held for less than the stall timeout", async () => {
    const live = await liveness({ catalog: Duration.zero, identity: Duration.seconds(9) })
    expect(live).toEqual({ status: 200, body: { status: "live" } })
  })

  it("is 503 naming the module whose pool has been held past the stall timeout", async () => {
    const live = await liveness({ catalog: Duration.zero, identity: Duration.seconds(12) })
    expect(live.status).toBe(503)
    expect(live.body).toEqual({
      status: "not live",
      modules: [{ name: "identity", detail: "every database connection held for 12 s, none given back" }]
    })
  })
})
