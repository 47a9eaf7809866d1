/**
 * The phases of a process's HTTP server: it listens first, and answers every request from then
 * until the process exits.
 *
 * - **starting** (its modules' databases opening and migrating, its clients dialling peers):
 *   `/health/live` 200, `/health/ready` 503 `{"status":"starting"}`, anything else (the REST API,
 *   `/rpc/*` upgrades) 503 with `Retry-After` and a `/problems/module-unavailable` problem body;
 * - **serving**: the app `Host.serve` assembled, as built;
 * - **stopping** (SIGTERM): requests in flight finish (for up to the grace period); new ones get
 *   the starting answers' stopping form, with `Connection: close` so that no client keeps sending
 *   on a connection about to close; `/rpc/*` connections are drained by their endpoint. Then the
 *   rest of the process stops, and the server stops listening last (`closing`).
 *
 * Why: a process listening only once ready leaves a peer that starts at the same moment (as
 * compose and Kubernetes start them) with a port that refuses or, worse, accepts and never
 * answers: @effect/platform listens before the app is served, and Node drops a request that
 * arrives with no request listener yet, so a WebSocket handshake timed out and a health probe
 * hung. Here the server is served once, at once, with an app that dispatches on the phase; the
 * app assembled later is handed over through an `HttpServer` of this module's own.
 */
import { type HttpApp, type HttpMiddleware, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Context, Deferred, Duration, Effect, Exit, Fiber, FiberId, Layer, Scope } from "effect"
import type * as http from "node:http"
import * as Garbage from "./Garbage.ts"
import * as Problem from "./gateway/Problem.ts"

/** How long after ready the garbage of starting is collected: the first answers go out before the pause. */
const COLLECT_AFTER = Duration.millis(500)

type Phase =
  | { readonly _tag: "Starting"; readonly detail: string }
  | {
    readonly _tag: "Serving"
    /** The assembled app, in the context it was built in. */
    readonly app: HttpApp.Default
    /** Its middleware around the server's own error handling, as `HttpServer.serve` applies it. */
    readonly wrapped: HttpApp.Default<unknown>
  }
  | { readonly _tag: "Stopping"; readonly detail: string }

/** What a request to a starting or stopping process gets. */
const placeholder = (phase: Phase, path: string) => {
  const stopping = phase._tag === "Stopping"
  const detail = phase._tag === "Serving" ? "" : phase.detail
  const headers = stopping ? { connection: "close" } : {}
  if (path === "/health/live") return HttpServerResponse.unsafeJson({ status: "live" }, { headers })
  if (path === "/health/ready") {
    return HttpServerResponse.unsafeJson({ status: stopping ? "stopping" : "starting", detail, modules: [] }, { status: 503, headers })
  }
  return Problem.response({
    type: Problem.typeOf("ModuleUnavailable"),
    title: "Service unavailable",
    status: 503,
    detail
  }).pipe(HttpServerResponse.setHeaders(headers))
}

const pathOf = (url: string) => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/** A WebSocket upgrade lives as long as its connection: its endpoint drains it, not this module. */
const isUpgrade = (request: HttpServerRequest.HttpServerRequest) => request.headers["upgrade"]?.toLowerCase() === "websocket"

/**
 * The server's phases. `listen` serves it on the real server at once; `handOver` is the
 * `HttpServer` the assembled app is served through.
 */
export const make = (options: {
  /** Why this process is not ready yet, as `/health/ready` and the 503s say. */
  readonly starting: string
  /** Applied to the starting and stopping answers (security headers...). */
  readonly middleware?: HttpMiddleware.HttpMiddleware
  /** How long requests in flight may take to finish at shutdown. */
  readonly grace: Duration.Duration
}) => {
  let phase: Phase = { _tag: "Starting", detail: `this process is starting (${options.starting}); retry shortly` }
  /** Requests to the assembled app not answered yet (WebSocket upgrades aside). */
  let inflight = 0
  let idle: Deferred.Deferred<void> | undefined
  /** The fibers of the WebSocket connections open now (`/rpc/*`). */
  const upgrades = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
  /** The server's error handling around the app (what `HttpServer.serve` hands a middleware). */
  let handled: HttpApp.Default<unknown> | undefined

  const dispatch: HttpApp.Default = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const current = phase
    if (current._tag !== "Serving") return Effect.succeed(placeholder(current, pathOf(request.url)))
    if (isUpgrade(request)) {
      // Its endpoint drains it when its fiber is interrupted: at stopping, as the platform's
      // own serve would at the end of its scope (this one ends last).
      return Effect.withFiberRuntime<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>((fiber) => {
        upgrades.add(fiber)
        return Effect.ensuring(current.app, Effect.sync(() => upgrades.delete(fiber)))
      })
    }
    inflight++
    return Effect.ensuring(
      current.app,
      Effect.sync(() => {
        if (--inflight === 0 && idle !== undefined) Deferred.unsafeDone(idle, Exit.void)
      })
    )
  })

  const placeholderMiddleware = options.middleware ?? ((app: HttpApp.Default<unknown>) => app)
  let around: HttpApp.Default<unknown> | undefined
  /** Once the server built its handler, the middleware of the current phase runs around it. */
  const middleware = ((app: HttpApp.Default<unknown>) => {
    handled = app
    around = placeholderMiddleware(app) as HttpApp.Default<unknown>
    return Effect.suspend(() => (phase._tag === "Serving" ? phase.wrapped : around!))
  }) as HttpMiddleware.HttpMiddleware

  /** Serves the phases on the real server (`NodeHttpServer.layer`): from now on every request is answered. */
  const listen = HttpServer.serve(dispatch, middleware)

  /** Stopping: new requests get 503; those in flight finish, for up to the grace period. */
  const stop = Effect.logInfo("shutting down: finishing in-flight requests").pipe(
    Effect.zipRight(Effect.suspend(() => {
      phase = { _tag: "Stopping", detail: "this process is shutting down; retry shortly" }
      const requests = inflight === 0 ? Effect.void : Effect.suspend(() => {
        idle = Deferred.unsafeMake<void>(FiberId.none)
        // Finalizers run uninterruptibly: only an interruptible wait can be cut short by the timeout.
        return Effect.timeout(Effect.interruptible(Deferred.await(idle)), options.grace).pipe(Effect.ignore)
      })
      // Each connection's endpoint lets its calls in flight finish (for up to the grace period).
      return Effect.all([requests, Fiber.interruptAll([...upgrades])], { concurrency: "unbounded", discard: true })
    }))
  )

  /**
   * The `HttpServer` the assembled app is served through: serving it switches this process to
   * serving; the end of its scope, to stopping.
   */
  const handOver = Layer.effect(
    HttpServer.HttpServer,
    Effect.map(HttpServer.HttpServer, (real) =>
      HttpServer.make({
        address: real.address,
        serve: (app, appMiddleware) =>
          Effect.gen(function*() {
            // The app runs in the context it was built in, but in the request's own scope.
            const context = Context.omit(Scope.Scope)(yield* Effect.context<never>())
            const provided = Effect.provide(app, context) as HttpApp.Default
            if (handled === undefined) return yield* Effect.dieMessage("Startup.handOver: the phases are not served (Startup.listen)")
            const wrapped = (appMiddleware ? appMiddleware(handled) : handled) as HttpApp.Default<unknown>
            yield* Effect.addFinalizer(() => stop)
            phase = { _tag: "Serving", app: provided, wrapped }
            yield* Effect.logInfo(`ready on port ${real.address._tag === "TcpAddress" ? real.address.port : real.address.path}`)
            // What starting left behind is collected once, in the background (Garbage.ts says why).
            yield* Effect.forkDaemon(Effect.delay(Garbage.collect, COLLECT_AFTER))
          })
      }))
  )

  return { listen, handOver }
}

/**
 * At shutdown, once everything else has stopped: the server stops accepting connections and
 * waits for those it has to close (each busy one is answered, the stopping answers with
 * `Connection: close`), then cuts those left after `grace`. Only then are the request listeners
 * removed: a request on a connection still open always finds one.
 */
export const closing = (server: http.Server, grace: Duration.Duration) =>
  Layer.scopedDiscard(Effect.addFinalizer(() =>
    Effect.async<void>((resume) => {
      // Node's http.Server.close also closes the connections idle at this moment (kept alive,
      // or accepted with no request read yet); busy ones are answered, then close. (net.Server's
      // own close would keep idle ones open, but Deno's node:http server does not stop
      // listening with it.)
      server.close(() => resume(Effect.void))
      const cut = setTimeout(() => server.closeAllConnections(), Duration.toMillis(grace))
      cut.unref()
      return Effect.sync(() => clearTimeout(cut))
    }).pipe(Effect.interruptible, Effect.timeout(Duration.sum(grace, Duration.seconds(1))), Effect.ignore)
  ))
