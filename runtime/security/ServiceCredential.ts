/**
 * The credential a process presents with every RPC call it makes to a module in another process,
 * and that a module's RPC endpoint checks before it runs anything.
 *
 * The credential is a short-lived JWT (HS256, jose) signed with `TESSERA_SERVICE_SECRET`, the one
 * setting every process of a deployment shares: `sub` names the calling process's modules, `aud`
 * the called module, and it expires after five minutes. A client signs one per called module and
 * reuses it until a minute before it expires; an endpoint verifies each call's token and remembers
 * the tokens it verified until they expire. Either side costs a map lookup per call.
 *
 * The endpoint also hands the caller identity the call carries (Caller.ts) to the handler, so the
 * next call the handler makes carries it on.
 */
import { Headers } from "@effect/platform"
import { RpcMiddleware } from "@effect/rpc"
import { Config, Effect, Option, Redacted, Schema } from "effect"
import * as jose from "jose"
import * as Caller from "./Caller.ts"

const ISSUER = "tessera/service"
const LIFETIME_SECONDS = 300
const RENEW_BEFORE_SECONDS = 60
const MIN_SECRET_LENGTH = 32
const HEADER = "x-tessera-service"

/** The endpoint refused the call's service credential (missing, expired, forged or for another module). */
export class ServiceCredentialRefused extends Schema.TaggedError<ServiceCredentialRefused>()(
  "ServiceCredentialRefused",
  { module: Schema.String, reason: Schema.String }
) {
  override get message() {
    return `${this.module} refused the call: ${this.reason} (every process needs the same TESSERA_SERVICE_SECRET)`
  }
}

/** Checks every call's service credential (server side) and adds it (client side). */
export class ServiceAuth extends RpcMiddleware.Tag<ServiceAuth>()("tessera/ServiceAuth", {
  wrap: true,
  requiredForClient: true,
  failure: ServiceCredentialRefused
}) {}

/** A deployment's shared secret. */
export type Secret = Redacted.Redacted<string>

/** `TESSERA_SERVICE_SECRET`, if set; too short a secret is refused. */
export const secretFromConfig: Config.Config<Option.Option<Secret>> = Config.option(
  Config.redacted("TESSERA_SERVICE_SECRET").pipe(
    Config.validate({
      message: `TESSERA_SERVICE_SECRET must be at least ${MIN_SECRET_LENGTH} characters (for example: openssl rand -base64 48)`,
      validation: (secret) => Redacted.value(secret).length >= MIN_SECRET_LENGTH
    })
  )
)

const keyOf = (secret: Secret) => new TextEncoder().encode(Redacted.value(secret))

/**
 * The client side: the middleware that adds this process's credential for `module` to each call.
 * `caller` names the calling process (its hosted modules).
 */
export const client = (secret: Secret, caller: string, module: string) => {
  const key = keyOf(secret)
  let current: { readonly token: string; readonly renewAt: number } | undefined
  const token = Effect.suspend(() => {
    const now = Date.now()
    if (current !== undefined && now < current.renewAt) return Effect.succeed(current.token)
    return Effect.map(
      Effect.promise(() =>
        new jose.SignJWT({})
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setIssuer(ISSUER)
          .setSubject(caller)
          .setAudience(module)
          .setIssuedAt(Math.floor(now / 1000))
          .setExpirationTime(Math.floor(now / 1000) + LIFETIME_SECONDS)
          .sign(key)
      ),
      (token) => {
        current = { token, renewAt: now + (LIFETIME_SECONDS - RENEW_BEFORE_SECONDS) * 1000 }
        return token
      }
    )
  })
  return RpcMiddleware.layerClient(ServiceAuth, ({ request }) =>
    Effect.map(token, (token) => ({ ...request, headers: Headers.set(request.headers, HEADER, token) })))
}

/** The server side: `module`'s endpoint refuses a call without a valid credential for it. */
export const server = (secret: Secret, module: string) => {
  const key = keyOf(secret)
  /** token → when it expires (ms): verified tokens, so a call verifies a signature once per token. */
  const verified = new Map<string, number>()
  const refuse = (reason: string) => Effect.fail(new ServiceCredentialRefused({ module, reason }))

  const verify = (token: string | undefined): Effect.Effect<void, ServiceCredentialRefused> => {
    if (token === undefined) return refuse("the call carries no service credential")
    const expires = verified.get(token)
    if (expires !== undefined) {
      if (Date.now() < expires) return Effect.void
      verified.delete(token)
      return refuse("the service credential has expired")
    }
    return Effect.tryPromise({
      try: () => jose.jwtVerify(token, key, { algorithms: ["HS256"], issuer: ISSUER, audience: module }),
      catch: (error) =>
        new ServiceCredentialRefused({
          module,
          reason: error instanceof jose.errors.JWTExpired
            ? "the service credential has expired"
            : "the service credential is not valid"
        })
    }).pipe(Effect.map(({ payload }) => {
      // Tokens are renewed every four minutes per caller: a handful live at once. The bound only
      // guards against a flood of distinct valid tokens.
      if (verified.size >= 10_000) verified.clear()
      verified.set(token, (payload.exp ?? 0) * 1000)
    }))
  }

  return ServiceAuth.of(({ headers, next }) =>
    Effect.zipRight(
      verify(headers[HEADER]),
      Option.match(Caller.fromHeaders(headers), {
        // The handler's own calls carry on the caller of this call, and no one else.
        onNone: () => Caller.anonymous(next),
        onSome: (caller) => Caller.withCaller(caller)(next)
      })
    )
  )
}

/** Whether a failure of a remote call is the peer refusing this process's credential. */
export const isRefused = (error: unknown): error is ServiceCredentialRefused => error instanceof ServiceCredentialRefused
