/**
 * `/openapi.json` and `/docs` are built on their first request, once, and answer what
 * `HttpApiBuilder.middlewareOpenApi` and `HttpApiSwagger.layer` answer when built at start.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpApiSwagger, HttpServer, OpenApi } from "@effect/platform"
import { Effect, Layer, Schema } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Docs from "./Docs.ts"

/** How many times the document was derived: the API's transform runs once per derivation. */
let derived = 0

const api = HttpApi.make("docs-test")
  .add(HttpApiGroup.make("things").add(HttpApiEndpoint.get("list", "/things").addSuccess(Schema.Array(Schema.String))))
  .annotate(OpenApi.Transform, (document) => {
    derived++
    return document
  })

const apiLayer = HttpApiBuilder.api(api).pipe(
  Layer.provide(HttpApiBuilder.group(api, "things", (handlers) => handlers.handle("list", () => Effect.succeed(["a"]))))
)

const serve = (docs: Layer.Layer<never, never, HttpApi.Api>) => {
  const web = HttpApiBuilder.toWebHandler(Layer.mergeAll(Layer.provideMerge(docs, apiLayer), HttpServer.layerContext))
  afterAll(() => web.dispose())
  return (path: string) => web.handler(new Request(`http://localhost${path}`))
}

describe("the gateway's docs", () => {
  const request = serve(Docs.layer)
  const atStart = serve(Layer.mergeAll(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" }), HttpApiSwagger.layer({ path: "/docs" })))

  it("derives nothing at start, then the document once however many ask at once", async () => {
    expect((await request("/things")).status).toBe(200)
    expect(derived).toBe(0)
    const answers = await Promise.all([request("/openapi.json"), request("/openapi.json"), request("/openapi.json")])
    expect(derived).toBe(1)
    const bodies = await Promise.all(answers.map((answer) => answer.text()))
    expect(new Set(bodies).size).toBe(1)
    expect((await request("/openapi.json")).status).toBe(200)
    expect(derived).toBe(1)
  })

  it("answers /openapi.json and /docs as the layers built at start do", async () => {
    for (const path of ["/openapi.json", "/docs"]) {
      const [lazy, eager] = await Promise.all([request(path), atStart(path)])
      expect(lazy.status).toBe(200)
      expect(lazy.headers.get("content-type")).toBe(eager.headers.get("content-type"))
      expect(await lazy.text()).toBe(await eager.text())
    }
    expect((await request("/docs")).headers.get("content-type")).toContain("text/html")
  })
})
