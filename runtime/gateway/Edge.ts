/**
 * What every request to the public API passes through, before and after routing. Every decision
 * below is taken from the route the request will reach, found by the router's own matcher with
 * the router's configuration (`ROUTER_CONFIG`, which Host.ts gives the HTTP router), never from
 * the raw URL: `/V1/AUTH/LOGIN`, `//v1/auth/login` or an absolute-form target reach login with
 * login's limits, or reach nothing.
 *
 * 1. a body limit (413 when declared by Content-Length, or found while reading); a body that is
 *    not `application/json` is 415 before it is read;
 * 2. its credential checked once (Auth.ts): a credential that is presented but not valid is
 *    refused with 401 whatever the route;
 * 3. per-client rate limits (token buckets, RateLimit.ts): by user or API key when
 *    authenticated, by client IP otherwise, and stricter on the endpoints annotated
 *    `Auth.CredentialExchange` (login, register) where every request is a password hash.
 *    A refused request gets 429 with `Retry-After`;
 * 4. a method the path does not define is 405 with `Allow`; `OPTIONS` answers `Allow` and,
 *    for an origin of `TESSERA_CORS_ORIGINS`, the CORS preflight;
 * 5. a JSON body nested deeper than `TESSERA_MAX_JSON_DEPTH` is a 400 validation problem;
 * 6. the caller set for every module call the request makes (Caller.ts), wherever it runs, and
 *    a deadline (`TESSERA_REQUEST_DEADLINE`, transport/Deadline.ts) that each call carries;
 * 7. every failure that is not a declared error answered with a problem response (validation,
 *    unknown route, malformed body, a module that did not run the call (503), lost it (502) or
 *    did not answer in time (504), defect — never a stack or SQL);
 * 8. security headers on every response (`securityHeaders`, applied around everything), and
 *    `Cache-Control: no-store` on answers of credential exchanges or to a credential.
 *
 * `/health/*` and `/rpc/*` (module-to-module, checked by the service credential) are neither
 * authenticated nor rate limited here. Limits on connections, headers and slow clients are the
 * HTTP server's (ServerLimits.ts).
 */
import {
  HttpApi,
  HttpApp,
  HttpIncomingMessage,
  HttpMethod,
  HttpMiddleware,
  type HttpRouter,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Config, Context, Duration, Effect, Option, Redacted } from "effect"
import * as FindMyWay from "find-my-way-ts"
import { createHash } from "node:crypto"
import * as Caller from "../security/Caller.ts"
import * as Declared from "../Settings.ts"
import * as Deadline from "../transport/Deadline.ts"
import * as Auth from "./Auth.ts"
import * as ChunkedBody from "./ChunkedBody.ts"
import * as Problem from "./Problem.ts"
import * as RateLimit from "./RateLimit.ts"

export interface Settings {
  readonly maxBodyBytes: number
  /** Requests per second per client; 0 turns rate limiting off. */
  readonly rateLimit: number
  /** Requests per minute per client IP to `/v1/auth/*`. */
  readonly authRateLimit: number
  /** How many proxies in front of the gateway append to X-Forwarded-For (0: trust none). */
  readonly trustedProxies: number
  /** How deep a JSON body may nest (arrays and objects). */
  readonly maxJsonDepth: number
  /** Origins (`https://shop.example`) whose pages may call the API from a browser. */
  readonly corsOrigins: ReadonlyArray<string>
  /**
   * The deadline of each request's work (`TESSERA_REQUEST_DEADLINE`, default 10 s): every call
   * between modules made for it carries what is left (transport/Deadline.ts); past it, 504.
   */
  readonly requestDeadline?: Duration.Duration
}

export const settings: Config.Config<Settings> = Config.all({
  maxBodyBytes: Declared.maxBodyBytes.config,
  rateLimit: Declared.rateLimit.config,
  authRateLimit: Declared.authRateLimit.config,
  trustedProxies: Declared.trustedProxies.config,
  // The API's deepest payload nests 3 levels; 32 leaves room while keeping decoding and the
  // formatting of its errors far from the stack's limit.
  maxJsonDepth: Declared.maxJsonDepth.config,
  corsOrigins: Declared.corsOrigins.config,
  requestDeadline: Declared.requestDeadline.config
})

/**
 * How the HTTP router matches paths, for it (Host.ts) and for the edge's own matcher: exactly,
 * case and slashes included, so that fewer spellings reach a route at all.
 */
export const ROUTER_CONFIG: Partial<FindMyWay.RouterConfig> = {
  caseSensitive: true,
  ignoreTrailingSlash: false,
  ignoreDuplicateSlashes: false,
  // find-my-way's default (100) turns a longer path parameter into "no route" (a 404 the
  // operation does not describe): the route matches, and its Schema refuses the value with a
  // 400 naming it. The limit guards regular-expression parameters, which no route has; the
  // whole URL is bounded by TESSERA_MAX_HEADER_BYTES.
  maxParamLength: Number.MAX_SAFE_INTEGER
}

/** What the edge needs to know of an endpoint of the API. */
export interface Route {
  readonly method: string
  readonly path: string
  /** It takes a payload (a JSON body). */
  readonly takesBody: boolean
  /** Annotated `Auth.CredentialExchange`. */
  readonly exchangesCredentials: boolean
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const

/**
 * The routes of `api`, matched as the router matches them (the same matcher and configuration).
 * Like the router, a HEAD request reaches the GET route of its path.
 */
export const routesOf = (api: HttpApi.HttpApi<string, any, any, any>) => {
  const router = FindMyWay.make<Route>(ROUTER_CONFIG)
  HttpApi.reflect(api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, mergedAnnotations }) => {
      const route: Route = {
        method: endpoint.method,
        path: endpoint.path,
        takesBody: Option.isSome(endpoint.payloadSchema) && HttpMethod.hasBody(endpoint.method),
        exchangesCredentials: Context.getOption(mergedAnnotations, Auth.CredentialExchange).pipe(Option.getOrElse(() => false))
      }
      router.on(endpoint.method, endpoint.path as HttpRouter.PathInput, route)
    }
  })
  const lookup = (method: string, url: string) =>
    router.find(method, url) ?? (method === "HEAD" ? router.find("GET", url) : undefined)
  const hasEmpty = (found: FindMyWay.FindResult<Route>) => Object.values(found.params).some((value) => value === "")
  /** The route `method` and `url` reach; none when a path parameter would be empty. */
  const find = (method: string, url: string): Route | undefined => {
    const found = lookup(method, url)
    return found === undefined || hasEmpty(found) ? undefined : found.handler
  }
  /** The methods `url` answers, `OPTIONS` included; empty when no route has its path. */
  const allowed = (url: string): ReadonlyArray<string> => {
    const methods = METHODS.filter((method) => find(method, url) !== undefined)
    return methods.length === 0 ? [] : [...methods, "OPTIONS"]
  }
  /**
   * Whether the router would take `url` to a route with an empty path parameter
   * (`/v1/products/` to `/v1/products/:id`): the edge answers that 404 itself.
   */
  const emptyParameter = (url: string) =>
    METHODS.some((method) => {
      const found = router.find(method, url)
      return found !== undefined && hasEmpty(found)
    })
  return { find, allowed, emptyParameter }
}

export type Routes = ReturnType<typeof routesOf>

/** Whether every percent-escape of `path` decodes, as UTF-8. */
const decodable = (path: string) => {
  try {
    decodeURIComponent(path)
    return true
  } catch {
    return false
  }
}

/** Whether a request carries a body (declared by Content-Length, or sent in chunks). */
const hasBody = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers["transfer-encoding"] !== undefined || Number(request.headers["content-length"] ?? 0) > 0

/** `application/json`, with no parameter but a UTF-8 charset. */
const isJson = (contentType: string | undefined) => {
  if (contentType === undefined) return false
  const [type, ...parameters] = contentType.split(";").map((s) => s.trim().toLowerCase())
  return type === "application/json" &&
    parameters.every((p) => p === "" || p === "charset=utf-8" || p === `charset="utf-8"`)
}

/** Whether `text` nests arrays and objects deeper than `limit`: counted, not parsed. */
export const nestsDeeperThan = (text: string, limit: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // a backslash escapes the next character
      else if (c === 34) inString = false
    } else if (c === 34) {
      inString = true
    } else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) {
      depth--
    }
  }
  return false
}

/**
 * Request headers a browser page of an allowed origin may send, and answer headers it may read.
 * (`HttpMiddleware.cors` does not fit: with no origins it allows every one, and it answers
 * `OPTIONS` on every path, routes or not.)
 */
const CORS_REQUEST_HEADERS = "authorization, content-type, x-api-key"
const CORS_EXPOSED_HEADERS = "retry-after, www-authenticate, allow"
const CORS_MAX_AGE_SECONDS = 600

const SECURITY_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "strict-transport-security": "max-age=31536000; includeSubDomains",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'"
}
/** The API explorer at /docs runs its own inline script and style. */
const DOCS_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; " +
  "connect-src 'self'; frame-ancestors 'none'"

const pathOf = (url: string) => {
  const q = url.indexOf("?")
  return q === -1 ? url : url.slice(0, q)
}

/** The client's address: the socket's, or with trusted proxies the one they saw. */
const clientAddress = (request: HttpServerRequest.HttpServerRequest, trustedProxies: number): string => {
  const forwarded = request.headers["x-forwarded-for"]
  if (trustedProxies > 0 && forwarded !== undefined) {
    const hops = forwarded.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    const seen = hops[hops.length - trustedProxies]
    if (seen !== undefined) return seen
  }
  return Option.getOrElse(request.remoteAddress, () => "unknown")
}

const tooMany = (retryAfterSeconds: number, detail: string) =>
  HttpServerResponse.unsafeJson(
    {
      type: Problem.typeOf("TooManyRequests"),
      title: "Too many requests",
      status: 429,
      detail,
      retryAfterSeconds
    } satisfies Problem.Problem,
    { status: 429, contentType: Problem.CONTENT_TYPE, headers: { "retry-after": String(retryAfterSeconds) } }
  )

const unauthenticated = (error: Caller.Unauthenticated) =>
  Problem.response({
    type: Problem.typeOf("Unauthenticated"),
    title: "Unauthenticated",
    status: 401,
    detail: error.reason,
    reason: error.reason
  })

/**
 * Adds the security headers to every response of the process, just before it is sent (so also
 * to the declared errors HttpApi renders after the API middleware): for `HttpApiBuilder.serve`.
 */
export const securityHeaders = HttpMiddleware.make((app) =>
  HttpApp.withPreResponseHandler(app, (request, response) => {
    const path = pathOf(request.url)
    const headers: Record<string, string> = { ...SECURITY_HEADERS }
    if (path === "/docs") headers["content-security-policy"] = DOCS_CSP
    // Answers for a caller are never cached by anyone on the way (those of credential
    // exchanges neither: the edge adds it from their route).
    if (request.headers["authorization"] !== undefined || request.headers[Auth.API_KEY_HEADER] !== undefined) {
      headers["cache-control"] = "no-store"
    }
    if (response.status === 401) headers["www-authenticate"] = `Bearer realm="tessera"`
    for (const name of Object.keys(headers)) if (response.headers[name] !== undefined) delete headers[name]
    return Effect.succeed(HttpServerResponse.setHeaders(response, headers))
  })
)

/** Credentials remembered as valid this long after their last success (see `middleware`). */
const KNOWN_GOOD_MS = 10 * 60 * 1000
const KNOWN_GOOD_MAX = 10_000

const fingerprint = (credential: Auth.Credential) =>
  createHash("sha256")
    .update(Redacted.value(credential._tag === "Bearer" ? credential.token : credential.key))
    .digest("base64url")

/** The gateway's middleware (see the module comment), for `HttpApiBuilder.middleware`. */
export const middleware = (settings: Settings, routes: Routes) =>
  Effect.map(Auth.Authenticator, (authenticator) => {
    const requestDeadline = settings.requestDeadline ?? Duration.decode(Declared.DEFAULT_REQUEST_DEADLINE)
    const perClient = settings.rateLimit > 0
      ? RateLimit.make({ rate: settings.rateLimit, burst: Math.max(1, Math.ceil(settings.rateLimit)) })
      : undefined
    const perClientOnAuth = settings.rateLimit > 0
      ? RateLimit.make({ rate: settings.authRateLimit / 60, burst: Math.max(1, Math.ceil(settings.authRateLimit)) })
      : undefined

    /**
     * Refused credentials per client IP, `TESSERA_RATE_LIMIT` a minute. From an address over
     * that budget, a credential whose check costs I/O (an API key: identity reads its table) is
     * answered 429 unchecked, unless it was found valid in the last minutes (`known`); one the
     * authenticator checks in process (an access token's signature) is always checked. So a
     * flood of bad credentials from an address stays cheap, and the valid credentials of others
     * behind the same address (a NAT, a proxy) are still served.
     */
    const refusalsFrom = settings.rateLimit > 0
      ? RateLimit.make({ rate: settings.rateLimit / 60, burst: Math.max(1, Math.ceil(settings.rateLimit)) })
      : undefined
    /** Fingerprints (SHA-256) of credentials found valid, with when they were last. */
    const known = new Map<string, number>()
    const remember = (credential: Auth.Credential) => {
      const key = fingerprint(credential)
      known.delete(key)
      known.set(key, Date.now())
      if (known.size > KNOWN_GOOD_MAX) known.delete(known.keys().next().value!)
    }
    const isKnown = (credential: Auth.Credential) => {
      const at = known.get(fingerprint(credential))
      return at !== undefined && Date.now() - at < KNOWN_GOOD_MS
    }

    /** Checks the request's credential, if it presents one. */
    const authenticate = (
      credential: Option.Option<Auth.Credential> | Caller.Unauthenticated,
      client: string
    ): Effect.Effect<Auth.Outcome> => {
      if (credential instanceof Caller.Unauthenticated) return Effect.succeed({ _tag: "Refused", error: credential })
      if (Option.isNone(credential)) return Effect.succeed(Auth.ANONYMOUS)
      return authenticator.authenticate(credential.value).pipe(
        Effect.match({
          onFailure: (error): Auth.Outcome => {
            refusalsFrom?.take(client)
            return { _tag: "Refused", error }
          },
          onSuccess: (caller): Auth.Outcome => {
            // A module's own identity exists only on calls between modules, never behind a credential.
            if (caller.kind === "service") {
              return { _tag: "Refused", error: new Caller.Unauthenticated({ reason: "the credential is not valid here" }) }
            }
            if (refusalsFrom !== undefined && authenticator.checkedLocally?.(credential.value) !== true) remember(credential.value)
            return { _tag: "Authenticated", caller }
          }
        }),
        // A module the check needs is unreachable: 503 from the problem mapping below.
        Effect.withSpan("gateway.authenticate")
      )
    }

    /** `undefined` when allowed, else the 429 answer. */
    const limit = (route: Route | undefined, client: string, outcome: Auth.Outcome) => {
      if (perClient === undefined || perClientOnAuth === undefined) return undefined
      if (route?.exchangesCredentials === true) {
        const decision = perClientOnAuth.take(client)
        if (!decision.allowed) {
          return tooMany(decision.retryAfterSeconds, `too many attempts from this address; retry in ${decision.retryAfterSeconds} s`)
        }
      }
      const key = outcome._tag === "Authenticated" ? `${outcome.caller.kind}:${outcome.caller.id}` : client
      const decision = perClient.take(key)
      return decision.allowed
        ? undefined
        : tooMany(decision.retryAfterSeconds, `rate limit of ${settings.rateLimit} requests per second exceeded`)
    }

    const withProblems = <E, R>(
      request: HttpServerRequest.HttpServerRequest,
      app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
    ) =>
      HttpIncomingMessage.withMaxBodySize(app, Option.some(settings.maxBodyBytes)).pipe(
        Effect.catchAllCause((cause) =>
          Effect.flatMap(
            Problem.fromCause(cause, request),
            Option.match({
              onNone: () => Effect.failCause(cause),
              onSome: (problem) => Effect.succeed(Problem.response(problem))
            })
          )
        )
      )

    const corsOrigins = new Set(settings.corsOrigins)
    /** The CORS headers for a request from an allowed origin; `undefined` for any other. */
    const corsHeaders = (request: HttpServerRequest.HttpServerRequest): Record<string, string> | undefined => {
      const origin = request.headers["origin"]
      return origin !== undefined && corsOrigins.has(origin)
        ? { "access-control-allow-origin": origin, vary: "Origin", "access-control-expose-headers": CORS_EXPOSED_HEADERS }
        : undefined
    }

    /** `OPTIONS` on a path of the API: its methods, and the CORS preflight for an allowed origin. */
    const options = (request: HttpServerRequest.HttpServerRequest, allow: ReadonlyArray<string>) => {
      const headers: Record<string, string> = { allow: allow.join(", ") }
      const cors = corsHeaders(request)
      const asked = request.headers["access-control-request-method"]
      if (cors !== undefined && asked !== undefined && allow.includes(asked)) {
        Object.assign(headers, cors, {
          "access-control-allow-methods": allow.join(", "),
          "access-control-allow-headers": CORS_REQUEST_HEADERS,
          "access-control-max-age": String(CORS_MAX_AGE_SECONDS)
        })
      } else if (cors !== undefined) {
        headers.vary = "Origin"
      }
      return HttpServerResponse.empty({ status: 204, headers })
    }

    /** Headers every answer to this request gets, added just before it is sent. */
    const answerHeaders = (request: HttpServerRequest.HttpServerRequest, route: Route | undefined) => {
      // With origins configured, an answer depends on the Origin: caches must know it.
      const headers: Record<string, string> = corsOrigins.size > 0 ? { vary: "Origin", ...corsHeaders(request) } : {}
      // A credential exchange's answers (a token, an error about a password) are never cached.
      if (route?.exchangesCredentials === true) headers["cache-control"] = "no-store"
      return Object.keys(headers).length === 0
        ? Effect.void
        : HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeaders(response, headers)))
    }

    /**
     * Reads the body within the size limit, then runs `next` on a request it can read again:
     * 413 past the limit, 400 for one nested too deep. A declared length is read as HttpApi reads
     * it (at most the limit, refused above); chunks without one by `ChunkedBody`, which never
     * resets the connection.
     */
    const withBodyChecked = <E, R>(
      request: HttpServerRequest.HttpServerRequest,
      next: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
    ) => {
      const read = request.headers["content-length"] !== undefined
        ? Effect.map(Effect.orDie(request.text), (text) => Option.some({ text, request }))
        : ChunkedBody.read(request, settings.maxBodyBytes)
      return Effect.flatMap(read, (body) => {
        if (Option.isNone(body)) return Effect.succeed(Problem.response(Problem.tooLarge(settings.maxBodyBytes)))
        if (nestsDeeperThan(body.value.text, settings.maxJsonDepth)) {
          return Effect.succeed(Problem.response(Problem.tooDeep(settings.maxJsonDepth)))
        }
        return body.value.request === request
          ? next
          : Effect.provideService(next, HttpServerRequest.HttpServerRequest, body.value.request)
      })
    }

    /** Answers a request of the API (or of no route): steps 1 to 7 of the module comment. */
    const edge = <E, R>(
      app: HttpApp.Default<E, R>,
      request: HttpServerRequest.HttpServerRequest,
      route: Route | undefined,
      allow: ReadonlyArray<string>
    ) => {
      if (route === undefined && allow.length === 0 && routes.emptyParameter(request.url)) {
        return Effect.succeed(Problem.response(Problem.routeNotFound(request)))
      }
      // The router cannot decode such a path, and would call it no route.
      if (route === undefined && allow.length === 0 && !decodable(pathOf(request.url))) {
        return Effect.succeed(Problem.response(Problem.undecodablePath()))
      }
      if (request.method === "OPTIONS" && allow.length > 0) return Effect.succeed(options(request, allow))
      const declared = Number(request.headers["content-length"] ?? 0)
      if (declared > settings.maxBodyBytes) return Effect.succeed(Problem.response(Problem.tooLarge(settings.maxBodyBytes)))
      // Decided before the body is read: HttpApi would read forms and multipart (to disk) too.
      // (No route, or another method's: the 404 or 405 says more, and no body is read.)
      if (route !== undefined && hasBody(request) && !isJson(request.headers["content-type"])) {
        return Effect.succeed(Problem.response(Problem.unsupportedMediaType(request.headers["content-type"])))
      }
      const client = clientAddress(request, settings.trustedProxies)
      const credential = Auth.credentialOf(request.headers)
      if (
        Option.isOption(credential) && Option.isSome(credential) && refusalsFrom?.has(client) === false &&
        authenticator.checkedLocally?.(credential.value) !== true && !isKnown(credential.value)
      ) {
        const retryAfter = Math.ceil(60 / settings.rateLimit)
        return Effect.succeed(tooMany(retryAfter, `too many refused credentials from this address; retry in ${retryAfter} s`))
      }
      const handled = Effect.flatMap(authenticate(credential, client), (outcome) => {
        const refused = limit(route, client, outcome)
        if (refused !== undefined) return Effect.succeed(refused)
        if (outcome._tag === "Refused") return Effect.succeed(unauthenticated(outcome.error))
        if (route === undefined && allow.length > 0) {
          return Effect.succeed(
            HttpServerResponse.setHeader(Problem.response(Problem.methodNotAllowed(request.method, allow)), "allow", allow.join(", "))
          )
        }
        const routed = Effect.locally(app, Auth.currentOutcome, outcome)
        const called = outcome._tag === "Authenticated" ? Caller.withCaller(outcome.caller)(routed) : routed
        return route?.takesBody === true && hasBody(request)
          ? withBodyChecked(request, called)
          : called
      })
      return withProblems(request, Deadline.within(handled, requestDeadline))
    }

    return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const route = routes.find(request.method, request.url)
        const allow = route === undefined ? routes.allowed(request.url) : []
        const path = pathOf(request.url)
        if (route === undefined && allow.length === 0 && (path.startsWith("/health/") || path.startsWith("/rpc/"))) {
          return withProblems(request, app)
        }
        return Effect.zipRight(answerHeaders(request, route), edge(app, request, route, allow))
      })
  })
