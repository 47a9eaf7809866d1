/**
 * Who is calling the public API, and whether they may.
 *
 * A request may present one credential: `Authorization: Bearer <access token or API key>` or
 * `X-Api-Key: <API key>`. The gateway's edge middleware (Edge.ts) checks it once per request with
 * the `Authenticator` that the module issuing credentials supplies (identity), before routing:
 * a credential that is presented but not valid is refused with 401 on every route. Endpoints then
 * declare what they need with a middleware, which also puts the scheme in the OpenAPI document:
 *
 *     HttpApiEndpoint.get("me", "/me").middleware(Auth.Authenticated)   any authenticated caller
 *     HttpApiEndpoint.post("create", "/products").middleware(Auth.AdminOnly)   admins only
 *
 * Both provide `CurrentCaller` to the handler; routes without either are public.
 */
import { HttpApiMiddleware, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Context, Effect, FiberRef, Layer, Option, Redacted, Schema } from "effect"
import { type Caller, CurrentCaller, Forbidden, Unauthenticated } from "../security/Caller.ts"
import * as Problem from "./Problem.ts"

/** What a request presented: a bearer token (an access token or an API key) or an API key header. */
export type Credential =
  | { readonly _tag: "Bearer"; readonly token: Redacted.Redacted<string> }
  | { readonly _tag: "ApiKey"; readonly key: Redacted.Redacted<string> }

/** Checks a credential; supplied to the gateway by the module that issues credentials. */
export class Authenticator extends Context.Tag("tessera/Authenticator")<Authenticator, {
  readonly authenticate: (credential: Credential) => Effect.Effect<Caller, Unauthenticated>
  /**
   * Whether checking `credential` needs no I/O (a signature checked in this process): the edge
   * then checks it even from an address that presented many bad ones. Absent: every check
   * counts as costly.
   */
  readonly checkedLocally?: (credential: Credential) => boolean
}>() {}

/**
 * Marks an endpoint that takes or hands out a credential (login, register), for
 * `HttpApiEndpoint.annotate(Auth.CredentialExchange, true)`: the edge limits it per client
 * address (`TESSERA_AUTH_RATE_LIMIT` a minute) and its answers are never cached.
 */
export class CredentialExchange extends Context.Tag("tessera/CredentialExchange")<CredentialExchange, boolean>() {}

/** The authenticator of a build with no module that issues credentials: it accepts none. */
export const noAuthenticator = Layer.succeed(Authenticator, {
  authenticate: () => Effect.fail(new Unauthenticated({ reason: "this deployment has no identity module to check credentials" }))
})

export const API_KEY_HEADER = "x-api-key"

const security = {
  bearer: HttpApiSecurity.bearer.pipe(
    HttpApiSecurity.annotate(OpenApi.Description, "An access token from POST /v1/auth/login, or an API key")
  ),
  apiKey: HttpApiSecurity.apiKey({ in: "header", key: "X-Api-Key" })
}

/** The 401 and 403 answers, as problems. */
export const UnauthenticatedProblem = Problem.schema(Unauthenticated)
export const ForbiddenProblem = Problem.schema(Forbidden)

/** Any authenticated caller (user or API key) may call the endpoint. */
export class Authenticated extends HttpApiMiddleware.Tag<Authenticated>()("tessera/Authenticated", {
  failure: UnauthenticatedProblem,
  provides: CurrentCaller,
  security
}) {}

/** Only an admin may call the endpoint. */
export class AdminOnly extends HttpApiMiddleware.Tag<AdminOnly>()("tessera/AdminOnly", {
  failure: Schema.Union(UnauthenticatedProblem, ForbiddenProblem),
  provides: CurrentCaller,
  security
}) {}

/** What the edge found for the current request: no credential, a caller, or a refused credential. */
export type Outcome =
  | { readonly _tag: "Anonymous" }
  | { readonly _tag: "Authenticated"; readonly caller: Caller }
  | { readonly _tag: "Refused"; readonly error: Unauthenticated }

export const ANONYMOUS: Outcome = { _tag: "Anonymous" }

/** The outcome of the current request's credential, set by the edge middleware. */
export const currentOutcome: FiberRef.FiberRef<Outcome> = FiberRef.unsafeMake<Outcome>(ANONYMOUS)

/** Reads the credential a request presents; `Refused` for a malformed Authorization header. */
export const credentialOf = (headers: Readonly<Record<string, string | undefined>>): Option.Option<Credential> | Unauthenticated => {
  const authorization = headers["authorization"]
  if (authorization !== undefined) {
    const match = /^Bearer +(\S+)\s*$/i.exec(authorization)
    if (match === null) {
      return new Unauthenticated({ reason: "the Authorization header must be `Bearer <token>`" })
    }
    return Option.some({ _tag: "Bearer", token: Redacted.make(match[1]!) })
  }
  const key = headers[API_KEY_HEADER]
  if (key !== undefined) return Option.some({ _tag: "ApiKey", key: Redacted.make(key.trim()) })
  return Option.none()
}

const caller = Effect.flatMap(FiberRef.get(currentOutcome), (outcome): Effect.Effect<Caller, Unauthenticated> => {
  switch (outcome._tag) {
    case "Authenticated":
      return Effect.succeed(outcome.caller)
    case "Refused":
      return Effect.fail(outcome.error)
    case "Anonymous":
      return Effect.fail(new Unauthenticated({ reason: "this needs a credential: Authorization: Bearer <token> or X-Api-Key" }))
  }
})

const admin = Effect.filterOrFail(
  caller,
  (caller) => caller.isAdmin,
  () => new Forbidden({ reason: "this needs the admin role" })
)

/** The endpoints' middleware: they read what the edge found. */
export const layer = Layer.mergeAll(
  Layer.succeed(Authenticated, { bearer: () => caller, apiKey: () => caller }),
  Layer.succeed(AdminOnly, { bearer: () => admin, apiKey: () => admin })
)
