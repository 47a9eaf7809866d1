/**
 * How the gateway checks the credentials identity issues, wherever identity runs:
 *
 * - an access token (a JWT) is verified in the gateway's own process against identity's public
 *   keys (JWKS), fetched through identity's client and cached for `KEYS_TTL`. A token whose key
 *   id the cache does not know waits for one fetch that begins after it arrived, and is checked
 *   against its result: a key rotated in another process verifies the first token it signs. The
 *   fetches are shared and bounded: one runs at a time, every token that waits meanwhile is
 *   checked against it, and fetches for unknown key ids begin at least `REFETCH_INTERVAL` apart,
 *   so a flood of forged key ids costs at most one small fetch per interval (each forged token
 *   waits for it, then is refused). In the process where identity rotated the key, the fetch
 *   begins at once (`KeyGeneration`). The previous key stays in the set (identity keeps it there)
 *   until the tokens it signed have expired;
 * - an API key (sent as `Bearer tsk_...` or `X-Api-Key`) is checked by identity on every request,
 *   so a revoked key stops working at once.
 *
 * jose's `createRemoteJWKSet` does the same caching but fetches from a URL; this fetches through
 * the module client so that it works in every topology and carries the service credential.
 *
 * A token verified once is not verified again while the key set it was verified against is the
 * one held, its expiry has not come and `KEYS_TTL` has not run out since that set was fetched:
 * a client sends one token with every request of a session, and an EdDSA verification costs
 * about a tenth of a millisecond of CPU. That is no longer than the keys themselves are trusted
 * unfetched, and a new key set (a rotation, a key withdrawn) ends every entry at once.
 */
import { Clock, Deferred, Duration, Effect, Exit, FiberId, Layer, Redacted, Schema } from "effect"
import * as jose from "jose"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import { API_KEY_PREFIX, Caller, IdentityClient, TOKEN_AUDIENCE, TOKEN_ISSUER, Unauthenticated } from "./IdentityApi.ts"
import { KeyGeneration } from "./internal/KeyGeneration.ts"

/** How long a fetched key set is used before it is fetched again. */
const KEYS_TTL = Duration.minutes(5)
/** Verified tokens remembered at most; the oldest is forgotten first. */
const VERIFIED_MAX = 10_000
/** The least time between the beginnings of two fetches caused by tokens with unknown key ids. */
export const REFETCH_INTERVAL = Duration.seconds(1)

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

/** A fetched key set; `at` is when its fetch began, `generation` the KeyGeneration then. */
interface KeySet {
  readonly set: jose.JWTVerifyGetKey
  readonly kids: ReadonlySet<string>
  readonly at: number
  readonly generation: number
}

/** A fetch of the key set. */
interface Fetch {
  /** Opened to begin at once rather than `REFETCH_INTERVAL` after the last fetch began. */
  readonly wake: Effect.Latch
  readonly done: Deferred.Deferred<KeySet>
}

export const IdentityAuthenticator = Layer.scoped(
  Auth.Authenticator,
  Effect.gen(function*() {
    const identity = yield* IdentityClient
    const scope = yield* Effect.scope
    const intervalMillis = Duration.toMillis(REFETCH_INTERVAL)
    let keys: KeySet | undefined
    /** The fetch that has not begun yet, if any: whoever joins it gets keys fetched after they asked. */
    let waiting: Fetch | undefined
    /** The fetch that began last; the next one begins after it is done. */
    let latest: Fetch | undefined
    let latestStart = Number.NEGATIVE_INFINITY
    /**
     * Tokens verified, with the caller each names, until when, and the key set that verified it.
     * A Map in insertion order: Effect's Cache knows no validity tied to another value (the set).
     */
    const verified = new Map<string, { readonly caller: Caller; readonly until: number; readonly keys: KeySet }>()

    const fetchKeys = (at: number, generation: number) =>
      Effect.map(Gateway.orUnavailable(identity.jwks()), (jwks): KeySet => ({
        set: jose.createLocalJWKSet({ keys: jwks.keys.map((key) => ({ ...key }) as jose.JWK) }),
        kids: new Set(jwks.keys.map((key) => key.kid)),
        at,
        generation
      }))

    /**
     * Runs `fetch` in the authenticator's scope, not in a request's fiber: a client that leaves
     * does not cut a fetch others wait for. While identity is unreachable, the keys already held
     * keep verifying the tokens they signed.
     */
    const run = (fetch: Fetch, previous: Fetch | undefined, delayMillis: number) =>
      Effect.gen(function*() {
        yield* Effect.raceFirst(Effect.sleep(Duration.millis(delayMillis)), fetch.wake.await)
        if (previous !== undefined) yield* Deferred.await(previous.done).pipe(Effect.exit)
        const at = yield* Clock.currentTimeMillis
        if (waiting === fetch) waiting = undefined
        latest = fetch
        latestStart = at
        const exit = yield* Effect.exit(fetchKeys(at, KeyGeneration.current()))
        const held = keys
        if (Exit.isSuccess(exit)) keys = exit.value
        else if (held !== undefined) {
          yield* Effect.logWarning("identity's keys could not be fetched again; using the keys held", exit.cause)
        }
        yield* Deferred.done(fetch.done, Exit.isFailure(exit) && held !== undefined ? Exit.succeed(held) : exit)
      }).pipe(
        // At shutdown: whoever waits for it is interrupted too, rather than left waiting.
        Effect.onInterrupt(() => Deferred.interrupt(fetch.done)),
        // Whatever the request that starts it runs under (the edge may be uninterruptible).
        Effect.interruptible,
        Effect.forkIn(scope)
      )

    /**
     * The key set of a fetch that begins after this call: the one waiting to begin, shared with
     * every token that waits meanwhile, or a new one, `REFETCH_INTERVAL` after the last began
     * (at once if `urgent`).
     */
    const refetch = (urgent: boolean): Effect.Effect<KeySet> =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // Nothing yields from here until a fetch is joined or made: the check and the update are
        // one step, so no two fetches wait to begin at once.
        const joined = waiting
        if (joined !== undefined) {
          if (urgent) yield* joined.wake.open
          return yield* Deferred.await(joined.done)
        }
        const fetch: Fetch = { wake: Effect.unsafeMakeLatch(false), done: Deferred.unsafeMake<KeySet>(FiberId.none) }
        waiting = fetch
        yield* run(fetch, latest, urgent ? 0 : Math.max(0, latestStart + intervalMillis - now))
        return yield* Deferred.await(fetch.done)
      })

    /** The key set to check a token signed by `kid` against. */
    const keysFor = (kid: string | undefined) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const held = keys
        if (held === undefined || now - held.at > Duration.toMillis(KEYS_TTL)) return yield* refetch(false)
        if (kid === undefined || held.kids.has(kid)) return held
        return yield* refetch(KeyGeneration.current() !== held.generation)
      })

    const verifyToken = (token: string) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const known = verified.get(token)
        if (known !== undefined) {
          if (known.keys === keys && now < known.until) return known.caller
          verified.delete(token)
        }
        const header = yield* Effect.try({
          try: () => jose.decodeProtectedHeader(token),
          catch: () => refused("the access token is malformed")
        })
        if (header.alg !== "EdDSA") return yield* Effect.fail(refused("the access token's algorithm is not accepted (EdDSA only)"))
        const held = yield* keysFor(header.kid)
        const { payload } = yield* Effect.tryPromise({
          try: () =>
            jose.jwtVerify(token, held.set, {
              algorithms: ["EdDSA"],
              issuer: TOKEN_ISSUER,
              audience: TOKEN_AUDIENCE,
              requiredClaims: ["sub", "exp"]
            }),
          catch: (error) => refused(reasonOf(error))
        })
        const claims = decodeClaims(payload)
        if (claims._tag === "Left") return yield* Effect.fail(refused("the access token's claims are not valid"))
        const caller = new Caller({ kind: "user", id: claims.right.sub, role: claims.right.role })
        if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value!)
        verified.set(token, {
          caller,
          until: Math.min((payload.exp ?? 0) * 1000, held.at + Duration.toMillis(KEYS_TTL)),
          keys: held
        })
        return caller
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
