/**
 * Identity's settings, declared to the runtime (IdentityModule.ts) so that they are checked at
 * start and printed by `tessera config` with every other setting (runtime/Setting.ts).
 */
import { Duration, Either, Redacted, Schema } from "effect"
import * as Setting from "../../../runtime/Setting.ts"
import * as Text from "../../../runtime/schema/Text.ts"
import { Email, Password } from "../IdentityApi.ts"

/** Bounds on scrypt's cost (log2 N), so that no setting or stored hash asks for gigabytes of memory. */
export const MIN_LOG2N = 1
export const MAX_LOG2N = 22

export const adminEmail = Setting.optional({
  name: "TESSERA_ADMIN_EMAIL",
  description: "the administrator created at start",
  expected: "an e-mail address in ASCII, such as admin@example.com",
  kind: { _tag: "Custom", invalid: ["nonsense", "admin@", "ädmin@example.com"] },
  parse: (raw) => {
    const email = Text.canonicalEmail(raw)
    return Schema.is(Email)(email) ? Either.right(email) : Either.left("")
  }
})

export const adminPassword = Setting.optional({
  name: "TESSERA_ADMIN_PASSWORD",
  description: "the password of the administrator created at start",
  expected: "8 to 256 characters, and no NUL",
  kind: { _tag: "Custom", invalid: ["short", "x".repeat(257), "has a \u0000 NUL"] },
  display: "secret",
  parse: (raw) => {
    const password = Redacted.make(raw)
    return Schema.is(Password)(password) ? Either.right(password) : Either.left("")
  }
})

export const passwordHashCost = Setting.integer({
  name: "TESSERA_PASSWORD_HASH_COST",
  description: "scrypt cost (log2 N) for new password hashes",
  default: "17",
  min: MIN_LOG2N,
  max: MAX_LOG2N
})

export const accessTokenTtl = Setting.duration({
  name: "TESSERA_ACCESS_TOKEN_TTL",
  description: "lifetime of an access token",
  default: "15 minutes",
  min: Duration.seconds(1),
  exclusiveMin: false
})

export const signingKeyRotation = Setting.duration({
  name: "TESSERA_SIGNING_KEY_ROTATION",
  description: "age at which identity starts signing with a new key",
  default: "30 days",
  min: Duration.zero,
  exclusiveMin: true
})

/** Every setting of identity, in the order README lists them. */
export const all: ReadonlyArray<Setting.Setting.Any> = [
  adminEmail,
  adminPassword,
  accessTokenTtl,
  signingKeyRotation,
  passwordHashCost
]
