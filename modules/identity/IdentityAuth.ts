/**
 * How the gateway checks the credentials identity issues, wherever identity runs:
 *
 * - an access token (a JWT) is verified in the gateway's own process against identity's public
 *   keys (JWKS), fetched through identity's client and cached. A token whose key id the cache
 *   does not know makes it fetch again (at most once per `REFETCH_COOLDOWN`), so a key rotated in
 *   another process is picked up by the first token it signs, and the previous key stays in the
 *   set (identity keeps it there) until the tokens it signed have expired;
 * - an API key (sent as `Bearer tsk_...` or `X-Api-Key`) is checked by identity on every request,
 *   so a revoked key stops working at once.
 *
 * jose's `createRemoteJWKSet` does the same caching but fetches from a URL; this fetches through
 * the module client so that it works in every topology and carries the service credential.
 */
import { DateTime, Duration, Effect, Layer, Redacted, Schema } from "effect"
import * as jose from "jose"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import { API_KEY_PREFIX, Caller, IdentityClient, TOKEN_AUDIENCE, TOKEN_ISSUER, Unauthenticated } from "./IdentityApi.ts"

/** How long a fetched key set is used before it is fetched again. */
const KEYS_TTL = Duration.minutes(5)
/** The least time between two fetches caused by tokens with an unknown key id. */
const REFETCH_COOLDOWN = Duration.seconds(5)

const refused = (reason: string) => new Unauthenticated({ reason })

/** Why jose refused a token, in words a client can act on. */
const reasonOf = (error: unknown): string => {
  if (error instanceof jose.errors.JWTExpired) return "the access token has expired"
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) return "the access token's signature is not valid"
  if (error instanceof jose.errors.JOSEAlgNotAllowed || error instanceof jose.errors.JOSENotSupported) {
    return "the access token's algorithm is not accepted (EdDSA only)"
  }
  if (error instanceof jose.errors.JWKSNoMatchingKey) return "the access token was not signed by a current identity key"
  if (error instanceof jose.errors.JWTClaimValidationFailed) return `the access token's ${error.claim} claim is not valid`
  return "the access token is malformed"
}

const Claims = Schema.Struct({ sub: Schema.String, role: Caller.fields.role })
const decodeClaims = Schema.decodeUnknownEither(Claims)

export const IdentityAuthenticator = Layer.effect(
  Auth.Authenticator,
  Effect.gen(function*() {
    const identity = yield* IdentityClient
    const lock = yield* Effect.makeSemaphore(1)
    let keys: { readonly set: jose.JWTVerifyGetKey; readonly kids: ReadonlySet<string>; readonly at: number } | undefined

    const fetchKeys = Effect.gen(function*() {
      const jwks = yield* Gateway.orUnavailable(identity.jwks())
      const at = DateTime.toEpochMillis(yield* DateTime.now)
      keys = {
        set: jose.createLocalJWKSet({ keys: jwks.keys.map((key) => ({ ...key }) as jose.JWK) }),
        kids: new Set(jwks.keys.map((key) => key.kid)),
        at
      }
      return keys
    })

    /**
     * The cached key set, fetched again when stale or when it does not know `kid`. While identity
     * is unreachable, the keys already held keep verifying the tokens they signed.
     */
    const keysFor = (kid: string | undefined) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const now = DateTime.toEpochMillis(yield* DateTime.now)
        const held = keys
        if (held === undefined) return yield* fetchKeys
        const stale = now - held.at > Duration.toMillis(KEYS_TTL)
        const unknown = kid !== undefined && !held.kids.has(kid) && now - held.at > Duration.toMillis(REFETCH_COOLDOWN)
        if (!stale && !unknown) return held
        return yield* fetchKeys.pipe(
          Effect.catchAllCause((cause) => {
            // Try again after the cooldown, not on every request meanwhile.
            keys = { ...held, at: Math.min(held.at, now - Duration.toMillis(KEYS_TTL)) + Duration.toMillis(REFETCH_COOLDOWN) }
            return Effect.as(Effect.logWarning("identity's keys could not be fetched again; using the keys held", cause), held)
          })
        )
      }))

    const verifyToken = (token: string) =>
      Effect.gen(function*() {
        const header = yield* Effect.try({
          try: () => jose.decodeProtectedHeader(token),
          catch: () => refused("the access token is malformed")
        })
        if (header.alg !== "EdDSA") return yield* Effect.fail(refused("the access token's algorithm is not accepted (EdDSA only)"))
        const { set } = yield* keysFor(header.kid)
        const { payload } = yield* Effect.tryPromise({
          try: () =>
            jose.jwtVerify(token, set, {
              algorithms: ["EdDSA"],
              issuer: TOKEN_ISSUER,
              audience: TOKEN_AUDIENCE,
              requiredClaims: ["sub", "exp"]
            }),
          catch: (error) => refused(reasonOf(error))
        })
        const claims = decodeClaims(payload)
        if (claims._tag === "Left") return yield* Effect.fail(refused("the access token's claims are not valid"))
        return new Caller({ kind: "user", id: claims.right.sub, role: claims.right.role })
      }).pipe(Effect.withSpan("identity.verifyAccessToken"))

    const apiKey = (key: Redacted.Redacted<string>) => Gateway.orUnavailable(identity.authenticateApiKey({ key }))

    return {
      authenticate: (credential) => {
        if (credential._tag === "ApiKey") return apiKey(credential.key)
        const token = Redacted.value(credential.token)
        return token.startsWith(API_KEY_PREFIX) ? apiKey(credential.token) : verifyToken(token)
      },
      checkedLocally: (credential) =>
        credential._tag === "Bearer" && !Redacted.value(credential.token).startsWith(API_KEY_PREFIX)
    }
  })
)
