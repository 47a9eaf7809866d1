/**
 * The credential a process presents to a module in another process before it may call it, and
 * that the module's RPC endpoint checks before it runs anything.
 *
 * The credential is a short-lived JWT (HS256, jose) signed with `TESSERA_SERVICE_SECRET`, the one
 * setting every process of a deployment shares: `sub` names the calling process's modules, `aud`
 * the called module, and it expires after five minutes. A client signs one per called module,
 * presents it when it opens a connection and again, renewed, a minute before it expires; the
 * endpoint verifies each one once and refuses calls on a connection whose credential has expired
 * (transport/Wire.ts).
 *
 * An endpoint accepts only what an issuer here signs: HS256, this issuer, exactly one audience
 * (the called module), `iat` and `exp` both present, a lifetime (`exp - iat`) of at most five
 * minutes, `iat` not in the future and `nbf` (if any) passed, each within `CLOCK_SKEW_SECONDS`.
 * Why one was refused is the `reason` of `ServiceCredentialRefused`, for the endpoint's own log;
 * the peer is told only that it was refused.
 */
import { Config, Effect, type Option, Redacted, Schema } from "effect"
import * as jose from "jose"
import * as Settings from "../Settings.ts"

const ISSUER = "tessera/service"
/** The longest a credential may live: what an issuer signs by default, and what a verifier accepts. */
export const LIFETIME_SECONDS = 300
/** How far two processes' clocks may disagree. */
export const CLOCK_SKEW_SECONDS = 30
const RENEW_BEFORE_SECONDS = 60

/** The endpoint refused the call's service credential (missing, expired, forged or for another module). */
export class ServiceCredentialRefused extends Schema.TaggedError<ServiceCredentialRefused>()(
  "ServiceCredentialRefused",
  { module: Schema.String, reason: Schema.String }
) {
  override get message() {
    return `${this.module} refused the call: ${this.reason} (every process needs the same TESSERA_SERVICE_SECRET)`
  }
}

/** A deployment's shared secret. */
export type Secret = Redacted.Redacted<string>

/** `TESSERA_SERVICE_SECRET`, if set; too short a secret is refused. */
export const secretFromConfig: Config.Config<Option.Option<Secret>> = Settings.serviceSecret.config

const keyOf = (secret: Secret) => new TextEncoder().encode(Redacted.value(secret))

/** The header that carries the credential when a connection opens. */
export const HEADER = "x-tessera-service"

/** A credential and the time (epoch ms) it expires. */
export interface Credential {
  readonly token: string
  readonly expiresAt: number
}

/**
 * The client side: the credentials of the calling process (`caller`, its hosted modules) for
 * `module`. `current` is the cached one until a minute before it expires, then a new one; a
 * credential is renewed once however many connections ask for it at once.
 */
export const issuer = (secret: Secret, caller: string, module: string, lifetimeSeconds = LIFETIME_SECONDS) => {
  if (!(lifetimeSeconds > 0 && lifetimeSeconds <= LIFETIME_SECONDS)) {
    throw new RangeError(`a service credential lives at most ${LIFETIME_SECONDS} seconds, not ${lifetimeSeconds}`)
  }
  const key = keyOf(secret)
  /** A minute early, or halfway through a lifetime shorter than two minutes. */
  const renewBeforeMs = Math.min(RENEW_BEFORE_SECONDS, lifetimeSeconds / 2) * 1000
  let cached: Promise<Credential> | undefined
  let renewAt = 0
  const sign = async (): Promise<Credential> => {
    const now = Math.floor(Date.now() / 1000)
    const token = await new jose.SignJWT({})
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(ISSUER)
      .setSubject(caller)
      .setAudience(module)
      .setIssuedAt(now)
      .setExpirationTime(now + lifetimeSeconds)
      .sign(key)
    return { token, expiresAt: (now + lifetimeSeconds) * 1000 }
  }
  return {
    current: (): Promise<Credential> => {
      if (cached === undefined || Date.now() >= renewAt) {
        renewAt = Date.now() + lifetimeSeconds * 1000 - renewBeforeMs
        cached = sign()
      }
      return cached
    },
    /** When a connection that presented `credential` should present a renewed one (epoch ms). */
    renewalTime: (credential: Credential): number =>
      credential.expiresAt - renewBeforeMs
  }
}

/** Why jose refused a token, in words for the endpoint's log. */
const why = (error: unknown): string => {
  if (error instanceof jose.errors.JWTExpired) return "the service credential has expired"
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) return "the service credential's signature is not valid"
  if (error instanceof jose.errors.JOSEAlgNotAllowed) return "the service credential is not signed with HS256"
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    return error.claim === "iat" && error.reason === "check_failed"
      ? "the service credential is not valid yet (iat is in the future)"
      : error.claim === "nbf"
      ? "the service credential is not valid yet (nbf)"
      : `the service credential's ${error.claim} claim is not valid (${error.reason})`
  }
  return "the service credential is malformed"
}

/**
 * The server side: checks a credential presented to `module`'s endpoint, and tells when it
 * expires (epoch ms).
 */
export const verifier = (secret: Secret, module: string) => {
  const key = keyOf(secret)
  const refused = (reason: string) => new ServiceCredentialRefused({ module, reason })
  return (token: string | undefined): Effect.Effect<number, ServiceCredentialRefused> =>
    token === undefined || token === ""
      ? Effect.fail(refused("no service credential was presented"))
      : Effect.tryPromise({
        try: () =>
          jose.jwtVerify(token, key, {
            algorithms: ["HS256"],
            issuer: ISSUER,
            audience: module,
            requiredClaims: ["iat", "exp"],
            maxTokenAge: LIFETIME_SECONDS + CLOCK_SKEW_SECONDS,
            clockTolerance: CLOCK_SKEW_SECONDS
          }),
        catch: (error) => refused(why(error))
      }).pipe(
        Effect.flatMap(({ payload }) => {
          const { aud, exp, iat } = payload as { aud: unknown; exp: number; iat: number }
          if (aud !== module) return Effect.fail(refused(`the service credential names ${Array.isArray(aud) ? "a list of audiences, not one" : "another audience"}`))
          if (exp - iat > LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) {
            return Effect.fail(refused(`the service credential lives ${exp - iat} seconds, more than ${LIFETIME_SECONDS}`))
          }
          return Effect.succeed(exp * 1000)
        })
      )
}
