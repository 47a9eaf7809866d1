/**
 * The identity contract: users who register and log in, the access tokens they get, the API keys
 * machine clients use, and the public keys that verify tokens. Calls that act for someone read
 * the caller the gateway authenticated from the call's headers (runtime/security/Caller.ts).
 */
import { HttpApiSchema } from "@effect/platform"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import { ModuleClient } from "../../runtime/Module.ts"
import * as Text from "../../runtime/schema/Text.ts"
import { Caller, Forbidden, Role, Unauthenticated } from "../../runtime/security/Caller.ts"
import { Idempotent } from "../../runtime/transport/Idempotent.ts"

export { Caller, Forbidden, Role, Unauthenticated }

/** A user's id: a UUID. */
export const UserId = Text.uuid.pipe(Schema.brand("UserId"))
export type UserId = typeof UserId.Type

/** An API key's id: a UUID. */
export const ApiKeyId = Text.uuid.pipe(Schema.brand("ApiKeyId"))
export type ApiKeyId = typeof ApiKeyId.Type

/**
 * A new e-mail address, in its canonical form (runtime/schema/Text.ts: NFKC, lower-cased, ASCII
 * only), so that two addresses that look alike are one address or refused.
 */
export const Email = Text.email

/**
 * A new password as given: 8 to 256 characters, any but NUL and lone surrogates, not normalised.
 * Redacted, so it never reaches a log, and no error quotes it.
 */
export const Password = Schema.Redacted(Text.secret({ minLength: 8, maxLength: 256 }))

/** A name given to a user or an API key: one line of text. */
const Name = Text.line({ maxLength: 200 })

/**
 * As stored: users registered before the text rules keep their e-mail address and name as they
 * were, so what identity answers is checked only for shape.
 */
const StoredEmail = Schema.String.pipe(Schema.maxLength(254))
const StoredName = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))

export class User extends Schema.Class<User>("identity/User")({
  id: UserId,
  email: StoredEmail,
  name: StoredName,
  role: Role,
  createdAt: Schema.DateTimeUtc
}) {}

/** What it takes to register: the new user gets the role `customer`. */
export const Registration = Schema.Struct({ email: Email, password: Password, name: Name })
export type Registration = typeof Registration.Type

/**
 * What a login presents. The e-mail address is canonicalised as at registration (so NFD and NFC
 * spellings find the same account); otherwise any text may be tried and only a match logs in.
 * The password is not judged at all (a user registered before the text rules may have any), and
 * no error quotes it.
 */
export const Credentials = Schema.Struct({
  email: Text.emailLookup,
  password: Schema.Redacted(
    Text.string.pipe(
      Schema.maxLength(256, { message: () => "must be at most 256 characters long", jsonSchema: { format: "password", maxLength: 256 } })
    )
  )
})
export type Credentials = typeof Credentials.Type

/** An access token: a JWT signed by identity, to send as `Authorization: Bearer <accessToken>`. */
export class AccessToken extends Schema.Class<AccessToken>("identity/AccessToken")({
  accessToken: Schema.String,
  tokenType: Schema.Literal("Bearer"),
  /** Seconds until the token expires. */
  expiresIn: Schema.Int.pipe(Schema.positive())
}) {}

/** An API key as listed: never the key itself, which is shown once, at creation. */
export class ApiKey extends Schema.Class<ApiKey>("identity/ApiKey")({
  id: ApiKeyId,
  name: StoredName,
  role: Role,
  createdAt: Schema.DateTimeUtc,
  revokedAt: Schema.NullOr(Schema.DateTimeUtc)
}) {}

/** A new API key, with the key itself: the only time it is shown. */
export class IssuedApiKey extends Schema.Class<IssuedApiKey>("identity/IssuedApiKey")({
  ...ApiKey.fields,
  key: Schema.String
}) {}

/** What it takes to issue an API key: a name to tell it by, and the role it acts with. */
export const NewApiKey = Schema.Struct({ name: Name, role: Text.oneOf(Role) })
export type NewApiKey = typeof NewApiKey.Type

/** A public key as a JSON Web Key (RFC 7517): only public members. */
export const PublicJwk = Schema.Struct({
  kty: Schema.String,
  kid: Schema.String,
  alg: Schema.String,
  use: Schema.Literal("sig"),
  crv: Schema.optional(Schema.String),
  x: Schema.optional(Schema.String),
  y: Schema.optional(Schema.String)
})
export type PublicJwk = typeof PublicJwk.Type

/** The keys that verify access tokens: the current one and those retired within a token's life. */
export class JsonWebKeySet extends Schema.Class<JsonWebKeySet>("identity/JsonWebKeySet")({
  keys: Schema.Array(PublicJwk)
}) {}

export class SigningKey extends Schema.Class<SigningKey>("identity/SigningKey")({ kid: Schema.String }) {}

/** The answer of `me` when the caller is a user: that user. */
export class CallingUser extends Schema.Class<CallingUser>("identity/CallingUser")({
  kind: Schema.Literal("user"),
  ...User.fields
}) {}

/** The answer of `me` when the caller is an API key: the key as listed, never the key itself. */
export class CallingApiKey extends Schema.Class<CallingApiKey>("identity/CallingApiKey")({
  kind: Schema.Literal("api-key"),
  ...ApiKey.fields
}) {}

/** Who is calling: a user or an API key, told apart by `kind`. */
export const Me = Schema.Union(CallingUser, CallingApiKey).annotations({
  identifier: "identity/Me",
  description: "The caller: a user (kind \"user\") or an API key (kind \"api-key\")."
})
export type Me = typeof Me.Type

/** Another user already registered this e-mail address. */
export class EmailTaken extends Schema.TaggedError<EmailTaken>()(
  "EmailTaken",
  { email: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `the e-mail address ${this.email} is already registered`
  }
}

/** The e-mail address and password do not match a user (which of the two is not said). */
export class InvalidCredentials extends Schema.TaggedError<InvalidCredentials>()(
  "InvalidCredentials",
  {},
  HttpApiSchema.annotations({ status: 401 })
) {
  override get message() {
    return "the e-mail address or the password is wrong"
  }
}

/** No user has this id, or the caller may not see it (which of the two is not said). */
export class UserNotFound extends Schema.TaggedError<UserNotFound>()(
  "UserNotFound",
  { userId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no user has id ${this.userId}`
  }
}

/** No API key has this id. */
export class ApiKeyNotFound extends Schema.TaggedError<ApiKeyNotFound>()(
  "ApiKeyNotFound",
  { apiKeyId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no API key has id ${this.apiKeyId}`
  }
}

export class IdentityRpcs extends RpcGroup.make(
  /** Registers a customer. */
  Rpc.make("register", { payload: Registration, success: User, error: EmailTaken }),
  /** Checks an e-mail address and password and issues an access token. */
  Rpc.make("login", { payload: Credentials, success: AccessToken, error: InvalidCredentials }),
  /** The caller: the user, or the API key. */
  Rpc.make("me", { success: Me, error: Schema.Union(Unauthenticated, UserNotFound) }).annotate(Idempotent, true),
  /** A user, for that user or an admin; anyone else gets UserNotFound, as for an unknown id. */
  Rpc.make("getUser", { payload: { id: UserId }, success: User, error: Schema.Union(Unauthenticated, UserNotFound) })
    .annotate(Idempotent, true),
  /** Admin: issues an API key acting with `role`. */
  Rpc.make("createApiKey", {
    payload: NewApiKey,
    success: IssuedApiKey,
    error: Schema.Union(Unauthenticated, Forbidden)
  }),
  /** Admin: every API key, newest first. */
  Rpc.make("listApiKeys", { success: Schema.Array(ApiKey), error: Schema.Union(Unauthenticated, Forbidden) }).annotate(Idempotent, true),
  /** Admin: revokes a key; it stops working at once. Revoking a revoked key is a no-op. */
  Rpc.make("revokeApiKey", {
    payload: { id: ApiKeyId },
    success: ApiKey,
    error: Schema.Union(Unauthenticated, Forbidden, ApiKeyNotFound)
  }).annotate(Idempotent, true),
  /** The caller an API key acts as; Unauthenticated when the key is unknown or revoked. */
  Rpc.make("authenticateApiKey", { payload: { key: Schema.Redacted(Text.string) }, success: Caller, error: Unauthenticated })
    .annotate(Idempotent, true),
  /** The public keys that verify access tokens. */
  Rpc.make("jwks", { success: JsonWebKeySet }).annotate(Idempotent, true),
  /** Admin: starts signing with a new key; tokens signed by the old one stay valid until they expire. */
  Rpc.make("rotateSigningKey", { success: SigningKey, error: Schema.Union(Unauthenticated, Forbidden) })
) {}

/** Calls identity, wherever it runs. */
export class IdentityClient extends ModuleClient("identity", IdentityRpcs)<IdentityClient>() {}

/** Who issues access tokens and whom they are for: identity signs with these, the gateway checks them. */
export const TOKEN_ISSUER = "tessera/identity"
export const TOKEN_AUDIENCE = "tessera"

/** Every API key starts with this, which tells it from an access token in `Authorization: Bearer`. */
export const API_KEY_PREFIX = "tsk_"
