/**
 * Password hashing with scrypt (node:crypto, off the main thread). A hash names its own
 * parameters — `scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>` — so hashes made at an older cost
 * still verify after `TESSERA_PASSWORD_HASH_COST` changes, and `needsRehash` says when to
 * upgrade one.
 */
import { Effect, Redacted } from "effect"
import { Buffer } from "node:buffer"
import * as crypto from "node:crypto"
import * as IdentitySettings from "./IdentitySettings.ts"

/** scrypt's block size and parallelism; the cost (log2 N) comes from configuration. */
const R = 8
const P = 1
const SALT_BYTES = 16
const HASH_BYTES = 32

/** Bounds on a stored hash's cost too, so a corrupt row cannot ask for gigabytes of memory. */
const { MAX_LOG2N, MIN_LOG2N } = IdentitySettings

export interface Parameters {
  readonly log2N: number
  readonly r: number
  readonly p: number
}

/** log2 of scrypt's N: 17 (128 MiB per hash with r = 8) unless `TESSERA_PASSWORD_HASH_COST` says otherwise. */
export const cost = IdentitySettings.passwordHashCost.config

const derive = (password: string, salt: Buffer, params: Parameters, length: number) =>
  Effect.async<Buffer>((resume) => {
    const N = 2 ** params.log2N
    // scrypt needs about 128 * N * r bytes; the default limit (32 MiB) is below the default cost.
    crypto.scrypt(password, salt, length, { N, r: params.r, p: params.p, maxmem: 256 * N * params.r }, (error, key) => {
      resume(error ? Effect.die(error) : Effect.succeed(key))
    })
  })

const format = (params: Parameters, salt: Buffer, hash: Buffer) =>
  `scrypt$${params.log2N}$${params.r}$${params.p}$${salt.toString("base64")}$${hash.toString("base64")}`

const parse = (stored: string): { params: Parameters; salt: Buffer; hash: Buffer } | undefined => {
  const parts = stored.split("$")
  if (parts.length !== 6 || parts[0] !== "scrypt") return undefined
  const [log2N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  if (![log2N, r, p].every(Number.isSafeInteger)) return undefined
  if (log2N < MIN_LOG2N || log2N > MAX_LOG2N || r < 1 || r > 32 || p < 1 || p > 16) return undefined
  const salt = Buffer.from(parts[4]!, "base64")
  const hash = Buffer.from(parts[5]!, "base64")
  if (salt.length === 0 || hash.length === 0) return undefined
  return { params: { log2N, r, p }, salt, hash }
}

/** Hashes `password` with `params` and a fresh random salt. */
export const hashWith = (password: Redacted.Redacted<string>, params: Parameters) =>
  Effect.gen(function*() {
    const salt = crypto.randomBytes(SALT_BYTES)
    const hash = yield* derive(Redacted.value(password), salt, params, HASH_BYTES)
    return format(params, salt, hash)
  })

/** Whether `password` matches `stored`; `false` for a hash this module cannot read. */
export const verify = (password: Redacted.Redacted<string>, stored: string) =>
  Effect.gen(function*() {
    const parsed = parse(stored)
    if (parsed === undefined) return false
    const candidate = yield* derive(Redacted.value(password), parsed.salt, parsed.params, parsed.hash.length)
    return crypto.timingSafeEqual(candidate, parsed.hash)
  })

/** The hashing service at the configured cost. */
export class Passwords extends Effect.Service<Passwords>()("identity/Passwords", {
  scoped: Effect.gen(function*() {
    const params: Parameters = { log2N: yield* Effect.orDie(cost), r: R, p: P }
    // A hash of nothing anyone knows, at the current cost: verifying against it takes as long as
    // verifying a real password, so a login for an unknown e-mail takes as long as a wrong password.
    // Made once, in the background from the start on (so that no such login pays for making it)
    // rather than before the process is ready: one hash at the default cost takes 0.3 to 1 s.
    const dummy = yield* Effect.cached(hashWith(Redacted.make(crypto.randomBytes(32).toString("base64")), params))
    yield* Effect.forkScoped(dummy)

    return {
      hash: (password: Redacted.Redacted<string>) => hashWith(password, params),
      verify,
      /** Spends the time of a verification, to answer for an unknown account. */
      verifyDummy: (password: Redacted.Redacted<string>) =>
        Effect.asVoid(Effect.flatMap(dummy, (stored) => verify(password, stored))),
      /** Whether `stored` was made at another cost than the current one (or cannot be read). */
      needsRehash: (stored: string) => {
        const parsed = parse(stored)
        return parsed === undefined || parsed.params.log2N !== params.log2N || parsed.params.r !== params.r ||
          parsed.params.p !== params.p
      }
    } as const
  })
}) {}
