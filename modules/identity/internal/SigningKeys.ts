/**
 * The Ed25519 keys that sign access tokens, kept in `signing_keys`, and the tokens they sign.
 *
 * The active key is the newest one not retired; one is made at start when there is none.
 * Rotating retires it and makes a new one, in one transaction that holds a lock no other
 * rotation can share, so replicas that rotate at once make one new key, not two. A key older than
 * `TESSERA_SIGNING_KEY_ROTATION` is rotated when it is next about to sign. A retired key stays
 * in the JWKS for a token's life (plus a minute of clock skew), so tokens it signed keep
 * verifying until they expire.
 */
import { SqlClient } from "@effect/sql"
import { Clock, Duration, Effect, Option, Schema } from "effect"
import * as jose from "jose"
import * as crypto from "node:crypto"
import { type PublicJwk, type Role, TOKEN_AUDIENCE, TOKEN_ISSUER, type UserId } from "../IdentityApi.ts"
import * as IdentitySettings from "./IdentitySettings.ts"
import { KeyGeneration } from "./KeyGeneration.ts"

const ALGORITHM = "EdDSA"

/** How long an access token is valid: `TESSERA_ACCESS_TOKEN_TTL`, 15 minutes by default. */
export const accessTokenTtl = IdentitySettings.accessTokenTtl.config

/** How old the active key may grow before it is rotated: `TESSERA_SIGNING_KEY_ROTATION`, 30 days by default. */
export const rotationAge = IdentitySettings.signingKeyRotation.config

/** How long after its expiry a token may still be presented (clocks of verifiers differ). */
const CLOCK_SKEW = Duration.seconds(60)

/** A JWK as stored: jsonb comes back parsed, but accept text too. */
const Jwk = Schema.Union(
  Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
)

const ActiveRow = Schema.Struct({
  kid: Schema.String,
  privateJwk: Jwk,
  createdAt: Schema.DateFromSelf
})
type ActiveRow = typeof ActiveRow.Type
const decodeActive = Schema.decodeUnknown(Schema.Array(ActiveRow))

const PublicRow = Schema.Struct({ kid: Schema.String, publicJwk: Jwk })
const decodePublic = Schema.decodeUnknown(Schema.Array(PublicRow))

/** Only the public members of an OKP key, whatever else the stored JWK holds. */
const publicMembers = (kid: string, jwk: Record<string, unknown>): PublicJwk => ({
  kty: String(jwk.kty),
  kid,
  alg: ALGORITHM,
  use: "sig",
  ...(typeof jwk.crv === "string" ? { crv: jwk.crv } : {}),
  ...(typeof jwk.x === "string" ? { x: jwk.x } : {})
})

export class SigningKeys extends Effect.Service<SigningKeys>()("identity/SigningKeys", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const ttl = yield* Effect.orDie(accessTokenTtl)
    const rotateAfter = yield* Effect.orDie(rotationAge)
    /** Imported private keys by kid: importing is done once per key and process. */
    const imported = new Map<string, jose.CryptoKey | Uint8Array>()

    const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

    const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.orDie(sql.withTransaction(effect))

    const selectActive = sql`SELECT kid, private_jwk AS "privateJwk", created_at AS "createdAt" FROM signing_keys
                             WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1`.pipe(
      Effect.flatMap(decodeActive),
      Effect.map((rows) => Option.fromNullable(rows[0]))
    )

    const isStale = (row: ActiveRow, at: Date) =>
      at.getTime() - row.createdAt.getTime() >= Duration.toMillis(rotateAfter)

    const generate = Effect.promise(async () => {
      const { privateKey, publicKey } = await jose.generateKeyPair(ALGORITHM, { crv: "Ed25519", extractable: true })
      const publicJwk = await jose.exportJWK(publicKey)
      const privateJwk = await jose.exportJWK(privateKey)
      // The RFC 7638 thumbprint: the same key always has the same kid.
      const kid = await jose.calculateJwkThumbprint(publicJwk)
      return { kid, privateJwk, publicJwk }
    })

    /**
     * Makes a new active key when there is none or `replace` says so of the current one, under a
     * lock that serialises this against every other replacement (in any process): the second to
     * come finds the first one's key and, being fresh, keeps it. Returns the active key's kid.
     */
    const replaceWhen = (replace: (active: ActiveRow, at: Date) => boolean) =>
      transaction(Effect.gen(function*() {
        yield* sql`LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE`
        const active = yield* selectActive
        const at = yield* now
        if (Option.isSome(active) && !replace(active.value, at)) return { kid: active.value.kid, made: false }
        const key = yield* generate
        yield* sql`UPDATE signing_keys SET retired_at = ${at} WHERE retired_at IS NULL`
        yield* sql`INSERT INTO signing_keys (kid, algorithm, private_jwk, public_jwk, created_at)
                   VALUES (${key.kid}, ${ALGORITHM}, ${JSON.stringify(key.privateJwk)}::jsonb,
                           ${JSON.stringify(key.publicJwk)}::jsonb, ${at})`
        yield* Effect.logInfo("new signing key").pipe(Effect.annotateLogs("kid", key.kid))
        return { kid: key.kid, made: true }
      })).pipe(
        // Once committed: the key cache of this process may fetch it at once.
        Effect.tap(({ made }) => made ? Effect.sync(KeyGeneration.advance) : Effect.void),
        Effect.map(({ kid }) => kid)
      )

    /** The key to sign with now, rotated first if it has grown too old. */
    const signingKey = Effect.gen(function*() {
      const found = yield* Effect.orDie(selectActive)
      if (Option.isSome(found) && !isStale(found.value, yield* now)) return found.value
      yield* replaceWhen(isStale)
      return yield* Effect.flatMap(Effect.orDie(selectActive), (row) =>
        Option.match(row, {
          onNone: () => Effect.dieMessage("no active signing key after rotation"),
          onSome: Effect.succeed
        }))
    })

    const privateKey = (row: ActiveRow) => {
      const cached = imported.get(row.kid)
      if (cached) return Effect.succeed(cached)
      return Effect.promise(() => jose.importJWK(row.privateJwk as jose.JWK, ALGORITHM)).pipe(
        Effect.tap((key) => Effect.sync(() => imported.set(row.kid, key)))
      )
    }

    // A process starts with a key to sign with.
    yield* replaceWhen(() => false)

    return {
      ttl,

      /** Signs an access token for `subject`; `expiresIn` is its life in seconds. */
      signAccessToken: Effect.fn("SigningKeys.signAccessToken")(function*(subject: UserId, role: Role) {
        const row = yield* signingKey
        const key = yield* privateKey(row)
        const issuedAt = Math.floor((yield* Clock.currentTimeMillis) / 1000)
        const expiresIn = Math.floor(Duration.toSeconds(ttl))
        const accessToken = yield* Effect.promise(() =>
          new jose.SignJWT({ role })
            .setProtectedHeader({ alg: ALGORITHM, kid: row.kid, typ: "JWT" })
            .setSubject(subject)
            .setIssuer(TOKEN_ISSUER)
            .setAudience(TOKEN_AUDIENCE)
            .setIssuedAt(issuedAt)
            .setExpirationTime(issuedAt + expiresIn)
            .setJti(crypto.randomUUID())
            .sign(key)
        )
        return { accessToken, expiresIn }
      }),

      /** The public keys that verify tokens now: the active key and those retired within a token's life. */
      publicKeys: Effect.fn("SigningKeys.publicKeys")(function*() {
        const cutoff = new Date((yield* Clock.currentTimeMillis) - Duration.toMillis(Duration.sum(ttl, CLOCK_SKEW)))
        const rows = yield* sql`SELECT kid, public_jwk AS "publicJwk" FROM signing_keys
                                WHERE retired_at IS NULL OR retired_at > ${cutoff}
                                ORDER BY created_at DESC, kid DESC`.pipe(Effect.flatMap(decodePublic), Effect.orDie)
        return rows.map((row) => publicMembers(row.kid, row.publicJwk))
      }),

      /** Retires the active key and starts signing with a new one; returns the new kid. */
      rotate: Effect.fn("SigningKeys.rotate")(function*() {
        return yield* replaceWhen(() => true)
      })
    } as const
  })
}) {}
