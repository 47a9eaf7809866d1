/**
 * What every request to the public API passes through, before and after routing:
 *
 * 1. a body limit (413 when declared by Content-Length, or found while reading);
 * 2. its credential checked once (Auth.ts): a credential that is presented but not valid is
 *    refused with 401 whatever the route;
 * 3. per-client rate limits (token buckets, RateLimit.ts): by user or API key when
 *    authenticated, by client IP otherwise, and stricter on `/v1/auth/*` (login, register) where
 *    every request is a password hash. A refused request gets 429 with `Retry-After`;
 * 4. the caller set for every module call the request makes (Caller.ts), wherever it runs;
 * 5. every failure that is not a declared error answered with a problem response (validation,
 *    unknown route, malformed body, unreachable module, defect — never a stack or SQL);
 * 6. security headers on every response (`securityHeaders`, applied around everything).
 *
 * `/health/*` and `/rpc/*` (module-to-module, checked by the service credential) are neither
 * authenticated nor rate limited here.
 */
import { HttpApp, HttpIncomingMessage, HttpMiddleware, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Config, Effect, Option } from "effect"
import * as Caller from "../security/Caller.ts"
import * as Auth from "./Auth.ts"
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
}

export const settings: Config.Config<Settings> = Config.all({
  maxBodyBytes: Config.integer("TESSERA_MAX_BODY_BYTES").pipe(Config.withDefault(1024 * 1024)),
  rateLimit: Config.number("TESSERA_RATE_LIMIT").pipe(
    Config.withDefault(100),
    Config.validate({ message: "TESSERA_RATE_LIMIT must be 0 (off) or more", validation: (n) => n >= 0 })
  ),
  authRateLimit: Config.number("TESSERA_AUTH_RATE_LIMIT").pipe(
    Config.withDefault(10),
    Config.validate({ message: "TESSERA_AUTH_RATE_LIMIT must be more than 0", validation: (n) => n > 0 })
  ),
  trustedProxies: Config.integer("TESSERA_TRUSTED_PROXIES").pipe(Config.withDefault(0))
})

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
    // Answers for a caller, or about credentials, are never cached by anyone on the way.
    if (
      path.startsWith("/v1/auth/") || request.headers["authorization"] !== undefined ||
      request.headers[Auth.API_KEY_HEADER] !== undefined
    ) headers["cache-control"] = "no-store"
    if (response.status === 401) headers["www-authenticate"] = `Bearer realm="tessera"`
    for (const name of Object.keys(headers)) if (response.headers[name] !== undefined) delete headers[name]
    return Effect.succeed(HttpServerResponse.setHeaders(response, headers))
  })
)

/** The gateway's middleware (see the module comment), for `HttpApiBuilder.middleware`. */
export const middleware = (settings: Settings) =>
  Effect.map(Auth.Authenticator, (authenticator) => {
    const perClient = settings.rateLimit > 0
      ? RateLimit.make({ rate: settings.rateLimit, burst: Math.max(1, Math.ceil(settings.rateLimit)) })
      : undefined
    const perClientOnAuth = settings.rateLimit > 0
      ? RateLimit.make({ rate: settings.authRateLimit / 60, burst: Math.max(1, Math.ceil(settings.authRateLimit)) })
      : undefined

    /**
     * Refused credentials per client IP, `TESSERA_RATE_LIMIT` a minute: an address that keeps
     * presenting bad ones is answered 429 before its next credential costs a check (an API key
     * check reads identity's table).
     */
    const refusalsFrom = settings.rateLimit > 0
      ? RateLimit.make({ rate: settings.rateLimit / 60, burst: Math.max(1, Math.ceil(settings.rateLimit)) })
      : undefined

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
          onSuccess: (caller): Auth.Outcome => ({ _tag: "Authenticated", caller })
        }),
        // A module the check needs is unreachable: 503 from the problem mapping below.
        Effect.withSpan("gateway.authenticate")
      )
    }

    /** `undefined` when allowed, else the 429 answer. */
    const limit = (path: string, client: string, outcome: Auth.Outcome) => {
      if (perClient === undefined || perClientOnAuth === undefined) return undefined
      if (path.startsWith("/v1/auth/")) {
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

    return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const path = pathOf(request.url)
        if (path.startsWith("/health/") || path.startsWith("/rpc/")) return withProblems(request, app)
        const declared = Number(request.headers["content-length"] ?? 0)
        if (declared > settings.maxBodyBytes) return Effect.succeed(Problem.response(Problem.tooLarge(settings.maxBodyBytes)))
        const client = clientAddress(request, settings.trustedProxies)
        const credential = Auth.credentialOf(request.headers)
        if (Option.isOption(credential) && Option.isSome(credential) && refusalsFrom?.has(client) === false) {
          const retryAfter = Math.ceil(60 / settings.rateLimit)
          return Effect.succeed(tooMany(retryAfter, `too many refused credentials from this address; retry in ${retryAfter} s`))
        }
        const handled = Effect.flatMap(authenticate(credential, client), (outcome) => {
          const refused = limit(path, client, outcome)
          if (refused !== undefined) return Effect.succeed(refused)
          if (outcome._tag === "Refused") return Effect.succeed(unauthenticated(outcome.error))
          const routed = Effect.locally(app, Auth.currentOutcome, outcome)
          return outcome._tag === "Authenticated" ? Caller.withCaller(outcome.caller)(routed) : routed
        })
        return withProblems(request, handled)
      })
  })
