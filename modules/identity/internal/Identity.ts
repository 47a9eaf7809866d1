/** Identity's use cases. Callers are resolved (and admins checked) by the handlers. */
import { Config, DateTime, Effect, Option, Redacted, Schema } from "effect"
import * as crypto from "node:crypto"
import * as Text from "../../../runtime/schema/Text.ts"
import {
  AccessToken,
  API_KEY_PREFIX,
  ApiKey,
  ApiKeyId,
  ApiKeyNotFound,
  Caller,
  CallingApiKey,
  CallingUser,
  type Credentials,
  InvalidCredentials,
  IssuedApiKey,
  JsonWebKeySet,
  type NewApiKey,
  type Registration,
  type Role,
  SigningKey,
  Unauthenticated,
  User,
  UserId,
  UserNotFound
} from "../IdentityApi.ts"
import { ApiKeysRepo } from "./ApiKeysRepo.ts"
import * as IdentitySettings from "./IdentitySettings.ts"
import { Passwords } from "./Passwords.ts"
import { SigningKeys } from "./SigningKeys.ts"
import { UsersRepo } from "./UsersRepo.ts"

/** E-mail addresses are stored and compared in their canonical form (Text.canonicalEmail). */
export const normalizeEmail = Text.canonicalEmail

/** The prefix and 32 random bytes in base64url (43 characters, unpadded). */
const API_KEY_FORMAT = new RegExp(`^${API_KEY_PREFIX}[A-Za-z0-9_-]{43}$`)

/**
 * The stored form of an API key. A fast hash is right here, unlike for passwords: the key is 256
 * random bits, so nobody can guess it however many hashes per second they compute, and slowing
 * the hash would only slow every authenticated request.
 */
const apiKeyHash = (key: string) => crypto.createHash("sha256").update(key, "utf8").digest("hex")

/** The first administrator, made at start from `TESSERA_ADMIN_EMAIL` and `TESSERA_ADMIN_PASSWORD`. */
const adminConfig = Config.all({ email: IdentitySettings.adminEmail.config, password: IdentitySettings.adminPassword.config })

export class Identity extends Effect.Service<Identity>()("identity/Identity", {
  effect: Effect.gen(function*() {
    const users = yield* UsersRepo
    const apiKeys = yield* ApiKeysRepo
    const passwords = yield* Passwords
    const signingKeys = yield* SigningKeys

    /** Stores a new user with a hash of `password`. */
    const createUser = (fields: { email: string; name: string; role: Role; password: Redacted.Redacted<string> }) =>
      Effect.gen(function*() {
        const user = new User({
          id: UserId.make(crypto.randomUUID()),
          email: normalizeEmail(fields.email),
          name: fields.name,
          role: fields.role,
          createdAt: yield* DateTime.now
        })
        yield* users.insert(user, yield* passwords.hash(fields.password))
        return user
      })

    const register = Effect.fn("Identity.register")(function*(registration: Registration) {
      return yield* createUser({ ...registration, role: "customer" })
    })

    const login = Effect.fn("Identity.login")(function*(credentials: Credentials) {
      const found = yield* users.findByEmail(normalizeEmail(credentials.email))
      if (Option.isNone(found)) {
        // As long as a wrong password takes: the answer's timing must not tell that no account exists.
        yield* passwords.verifyDummy(credentials.password)
        return yield* new InvalidCredentials()
      }
      const { passwordHash, user } = found.value
      if (!(yield* passwords.verify(credentials.password, passwordHash))) return yield* new InvalidCredentials()
      if (passwords.needsRehash(passwordHash)) {
        yield* users.updatePasswordHash(user.id, yield* passwords.hash(credentials.password))
      }
      const token = yield* signingKeys.signAccessToken(user.id, user.role)
      return new AccessToken({ ...token, tokenType: "Bearer" })
    })

    /** The caller described: the user, or the API key (whose use fails once it is revoked). */
    const me = Effect.fn("Identity.me")(function*(caller: Caller) {
      if (caller.kind === "service") {
        return yield* new Unauthenticated({ reason: "a module calling on its own account is neither a user nor an API key" })
      }
      if (caller.kind === "apiKey") {
        const found = Schema.is(ApiKeyId)(caller.id) ? yield* apiKeys.findById(caller.id) : Option.none()
        if (Option.isNone(found) || found.value.revokedAt !== null) {
          return yield* new Unauthenticated({ reason: "the API key is not known or was revoked" })
        }
        return new CallingApiKey({ kind: "api-key", ...found.value })
      }
      const found = yield* users.findById(caller.id)
      if (Option.isNone(found)) return yield* new UserNotFound({ userId: caller.id })
      return new CallingUser({ kind: "user", ...found.value.user })
    })

    const getUser = Effect.fn("Identity.getUser")(function*(caller: Caller, id: UserId) {
      const allowed = caller.isAdmin || (caller.kind === "user" && caller.id === id)
      // Someone else's id gets the answer an unknown id gets: which ids exist is not revealed.
      const found = allowed ? yield* users.findById(id) : Option.none()
      if (Option.isNone(found)) return yield* new UserNotFound({ userId: id })
      return found.value.user
    })

    const createApiKey = Effect.fn("Identity.createApiKey")(function*(admin: Caller, input: NewApiKey) {
      const key = API_KEY_PREFIX + crypto.randomBytes(32).toString("base64url")
      const apiKey = new ApiKey({
        id: ApiKeyId.make(crypto.randomUUID()),
        name: input.name,
        role: input.role,
        createdAt: yield* DateTime.now,
        revokedAt: null
      })
      yield* apiKeys.insert(apiKey, apiKeyHash(key))
      yield* Effect.logInfo("API key created").pipe(
        Effect.annotateLogs({ apiKeyId: apiKey.id, role: apiKey.role, by: admin.id })
      )
      return new IssuedApiKey({ ...apiKey, key })
    })

    const listApiKeys = Effect.fn("Identity.listApiKeys")(function*() {
      return yield* apiKeys.list
    })

    const revokeApiKey = Effect.fn("Identity.revokeApiKey")(function*(admin: Caller, id: ApiKeyId) {
      const revoked = yield* apiKeys.revoke(id, yield* DateTime.now)
      if (Option.isNone(revoked)) return yield* new ApiKeyNotFound({ apiKeyId: id })
      yield* Effect.logInfo("API key revoked").pipe(Effect.annotateLogs({ apiKeyId: id, by: admin.id }))
      return revoked.value
    })

    const authenticateApiKey = Effect.fn("Identity.authenticateApiKey")(function*(key: Redacted.Redacted<string>) {
      const text = Redacted.value(key)
      if (!API_KEY_FORMAT.test(text)) return yield* new Unauthenticated({ reason: "the API key is malformed" })
      const found = yield* apiKeys.findByHash(apiKeyHash(text))
      if (Option.isNone(found)) return yield* new Unauthenticated({ reason: "the API key is not known" })
      if (found.value.revokedAt !== null) return yield* new Unauthenticated({ reason: "the API key was revoked" })
      return new Caller({ kind: "apiKey", id: found.value.id, role: found.value.role })
    })

    const jwks = Effect.fn("Identity.jwks")(function*() {
      return new JsonWebKeySet({ keys: yield* signingKeys.publicKeys() })
    })

    const rotateSigningKey = Effect.fn("Identity.rotateSigningKey")(function*(admin: Caller) {
      const kid = yield* signingKeys.rotate()
      yield* Effect.logInfo("signing key rotated").pipe(Effect.annotateLogs({ kid, by: admin.id }))
      return new SigningKey({ kid })
    })

    /**
     * Creates the configured administrator unless a user has that address. Safe to run at every
     * start of every replica: when two create it at once, the second finds the address taken.
     *
     * When a user who is not an administrator has the address (someone registered it before the
     * operator set TESSERA_ADMIN_EMAIL), that user becomes the administrator only if its password
     * is TESSERA_ADMIN_PASSWORD, which proves the operator holds the account; otherwise identity
     * refuses to start, naming the variable: silently running without the expected administrator,
     * or handing the role to whoever registered the address first, would both be wrong.
     */
    const bootstrapAdmin = Effect.fn("Identity.bootstrapAdmin")(function*() {
      const config = yield* Effect.orDie(adminConfig)
      if (Option.isNone(config.email) || Option.isNone(config.password)) {
        if (Option.isSome(config.email) || Option.isSome(config.password)) {
          yield* Effect.logWarning("no administrator created: set both TESSERA_ADMIN_EMAIL and TESSERA_ADMIN_PASSWORD")
        }
        return
      }
      const email = config.email.value
      const existing = yield* users.findByEmail(email)
      if (Option.isSome(existing)) {
        const { passwordHash, user } = existing.value
        if (user.role === "admin") return
        if (!(yield* passwords.verify(config.password.value, passwordHash))) {
          return yield* Effect.die(
            new Error(
              "TESSERA_ADMIN_EMAIL belongs to a user who is not an administrator and whose password is not " +
                "TESSERA_ADMIN_PASSWORD: choose another TESSERA_ADMIN_EMAIL, or set TESSERA_ADMIN_PASSWORD to that " +
                "user's password to make it the administrator"
            )
          )
        }
        yield* users.setRole(user.id, "admin")
        yield* Effect.logWarning("the user with TESSERA_ADMIN_EMAIL was made an administrator: its password matched").pipe(
          Effect.annotateLogs({ email, userId: user.id })
        )
        return
      }
      yield* createUser({ email, name: "Administrator", role: "admin", password: config.password.value }).pipe(
        Effect.tap((user) =>
          Effect.logInfo("administrator created").pipe(Effect.annotateLogs({ email, userId: user.id }))
        ),
        Effect.catchTag("EmailTaken", () => Effect.void)
      )
    })

    return {
      register,
      login,
      me,
      getUser,
      createApiKey,
      listApiKeys,
      revokeApiKey,
      authenticateApiKey,
      jwks,
      rotateSigningKey,
      bootstrapAdmin
    } as const
  }),
  dependencies: [UsersRepo.Default, ApiKeysRepo.Default, Passwords.Default, SigningKeys.Default]
}) {}
