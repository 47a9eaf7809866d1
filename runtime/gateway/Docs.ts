/**
 * The gateway's OpenAPI document at `/openapi.json` and its API explorer (Swagger UI) at `/docs`.
 *
 * Each is built on its first request and kept for the life of the process: the document of every
 * module's API takes tens of milliseconds to derive from its schemas, and the explorer is 2 MB of
 * script wrapped around another copy of it, so building both when the process starts (as
 * `HttpApiBuilder.middlewareOpenApi` and `HttpApiSwagger.layer` do) made every start slower for
 * pages most processes never serve. The answers are the ones those two layers give.
 */
import { HttpApi, HttpApiBuilder, HttpRouter, HttpServerResponse, OpenApi } from "@effect/platform"
import { type Context, Effect, Layer } from "effect"
import * as Edge from "./Edge.ts"

export const DOCUMENT_PATH = "/openapi.json"
export const EXPLORER_PATH = "/docs"

/**
 * `effect`, run once by whichever request comes first; the others wait for it and get its
 * result. Uninterruptible, so that a first client that hangs up does not leave every later
 * request with its interruption (`Effect.cached` keeps whatever the first run ended with).
 */
const once = <A>(effect: Effect.Effect<A>) => Effect.cached(Effect.uninterruptible(effect))

/**
 * The explorer of `api`: `HttpApiSwagger.layer` built into a router of its own, which answers
 * `EXPLORER_PATH` exactly as it would in the server's. Swagger UI is imported here, not at the
 * top: a process evaluates and holds its 2 MB of script only once someone opens the page.
 */
const explorer = (api: Context.Tag.Service<HttpApi.Api>) =>
  Effect.gen(function*() {
    const HttpApiSwagger = yield* Effect.promise(() => import("@effect/platform/HttpApiSwagger"))
    // Router.Live is shared within one build: the router the explorer registers on is the one merged out.
    const built = yield* Layer.build(Layer.provideMerge(HttpApiSwagger.layer({ path: EXPLORER_PATH }), HttpApiBuilder.Router.Live)).pipe(
      Effect.provideService(HttpApi.Api, api),
      Effect.scoped
    )
    return yield* Effect.provide(HttpApiBuilder.Router.router, built)
  }).pipe(Effect.locally(HttpRouter.currentRouterConfig, Edge.ROUTER_CONFIG))

/** Serves `DOCUMENT_PATH` and `EXPLORER_PATH` on the API's router, each built when first asked for. */
export const layer: Layer.Layer<never, never, HttpApi.Api> = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const api = yield* HttpApi.Api
    const document = yield* once(Effect.suspend(() => Effect.orDie(HttpServerResponse.json(OpenApi.fromApi(api.api)))))
    const explorerRouter = yield* once(explorer(api))
    yield* router.get(DOCUMENT_PATH, document)
    yield* router.get(EXPLORER_PATH, Effect.flatten(explorerRouter))
  })
)
