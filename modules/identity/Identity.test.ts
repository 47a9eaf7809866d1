/** Identity through its public client, in process, on PostgreSQL and on embedded PostgreSQL. */
import * as Reactivity from "@effect/experimental/Reactivity"
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { ConfigProvider, Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { createLocalJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from "jose"
import { expect, it } from "vitest"
import { EmbeddedPostgres } from "../../runtime/db/EmbeddedPostgres.ts"
import * as Caller from "../../runtime/security/Caller.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import {
  AccessToken,
  ApiKey,
  ApiKeyId,
  ApiKeyNotFound,
  CallingUser,
  EmailTaken,
  Forbidden,
  IdentityClient,
  InvalidCredentials,
  IssuedApiKey,
  type JsonWebKeySet,
  type Registration,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  Unauthenticated,
  User,
  UserId,
  UserNotFound
} from "./IdentityApi.ts"
import { IdentityModule } from "./IdentityModule.ts"

const ADMIN_EMAIL = "root@example.com"
const ADMIN_PASSWORD = "admin password 1"

const config = {
  TESSERA_PASSWORD_HASH_COST: "10",
  TESSERA_ADMIN_EMAIL: ADMIN_EMAIL,
  TESSERA_ADMIN_PASSWORD: ADMIN_PASSWORD
}

const unique = () => Math.random().toString(36).slice(2, 10)

const registration = (fields: Partial<Record<keyof Registration, unknown>> = {}) =>
  ({
    email: `user-${unique()}@example.com`,
    password: Redacted.make("a good password"),
    name: "Ana",
    ...fields
  }) as Registration

const credentials = (email: string, password: string) => ({ email, password: Redacted.make(password) })

/** Checks a token as the gateway will: signature against the JWKS, issuer, audience, algorithm. */
const verify = (token: string, jwks: JsonWebKeySet) =>
  jwtVerify(token, createLocalJWKSet({ keys: jwks.keys.map((k) => ({ ...k }) as JWK) }), {
    issuer: TOKEN_ISSUER,
    audience: TOKEN_AUDIENCE,
    algorithms: ["EdDSA"]
  })

const userCaller = (user: User) => new Caller.Caller({ kind: "user", id: user.id, role: user.role })

const unknownUser = UserId.make("3f1c2b7e-9d5a-4c8e-b6f0-1a2b3c4d5e6f")

type Client = IdentityClient["Type"]

TestHost.describeOnDatabases("identity", (database) => TestHost.layer([IdentityModule], database, [], config), (run) => {
  const call = <A, E>(f: (client: Client) => Effect.Effect<A, E>) => run(Effect.flatMap(IdentityClient, f))
  const fail = <A, E>(f: (client: Client) => Effect.Effect<A, E>) => run(Effect.flip(Effect.flatMap(IdentityClient, f)))
  const as = (caller: Caller.Caller) => ({
    call: <A, E>(f: (client: Client) => Effect.Effect<A, E>) =>
      run(Caller.withCaller(caller)(Effect.flatMap(IdentityClient, f))),
    fail: <A, E>(f: (client: Client) => Effect.Effect<A, E>) =>
      run(Effect.flip(Caller.withCaller(caller)(Effect.flatMap(IdentityClient, f))))
  })

  const admin = async () => {
    const token = await call((c) => c.login(credentials(ADMIN_EMAIL, ADMIN_PASSWORD)))
    const { payload } = await verify(token.accessToken, await call((c) => c.jwks()))
    return new Caller.Caller({ kind: "user", id: payload.sub!, role: payload.role as "admin" })
  }
  const customer = async () => userCaller(await call((c) => c.register(registration())))

  it("registers a customer, logs in, and issues a token the JWKS verifies", async () => {
    const input = registration()
    const user = await call((c) => c.register(input))
    expect(user).toBeInstanceOf(User)
    expect(user).toMatchObject({ email: input.email, name: "Ana", role: "customer" })
    expect(user).not.toHaveProperty("password")
    expect(user).not.toHaveProperty("passwordHash")

    const token = await call((c) => c.login(credentials(input.email, "a good password")))
    expect(token).toBeInstanceOf(AccessToken)
    expect(token).toMatchObject({ tokenType: "Bearer", expiresIn: 900 })

    const jwks = await call((c) => c.jwks())
    const { payload, protectedHeader } = await verify(token.accessToken, jwks)
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: expect.any(String), typ: "JWT" })
    expect(jwks.keys.map((k) => k.kid)).toContain(protectedHeader.kid)
    expect(payload).toMatchObject({ sub: user.id, role: "customer", iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE })
    expect(payload.exp! - payload.iat!).toBe(900)
    expect(payload.jti).toEqual(expect.any(String))
  })

  it("answers me for the calling user, and not for an unknown API key or no one", async () => {
    const user = await call((c) => c.register(registration()))
    expect(await as(userCaller(user)).call((c) => c.me())).toEqual(new CallingUser({ kind: "user", ...user }))
    const keyId = "7d2c1b0a-9e8f-4a6b-8c5d-3e2f1a0b9c8d"
    expect(await as(new Caller.Caller({ kind: "apiKey", id: keyId, role: "admin" })).fail((c) => c.me())).toBeInstanceOf(
      Unauthenticated
    )
    expect(await fail((c) => c.me())).toBeInstanceOf(Unauthenticated)
    // A module on its own account has no account here (and its name is no user id).
    expect(await as(Caller.service("orders")).fail((c) => c.me())).toBeInstanceOf(Unauthenticated)
    expect(await as(Caller.service("orders")).fail((c) => c.getUser({ id: user.id }))).toBeInstanceOf(UserNotFound)
  })

  it("stores e-mail addresses lowercased and matches them without regard to case", async () => {
    const email = `Mixed.${unique()}@Example.COM`
    const user = await call((c) => c.register(registration({ email })))
    expect(user.email).toBe(email.toLowerCase())
    expect(await call((c) => c.login(credentials(`  ${email.toUpperCase()} `, "a good password")))).toBeInstanceOf(
      AccessToken
    )
  })

  it("refuses an e-mail address already registered, in any case", async () => {
    const email = `taken-${unique()}@example.com`
    await call((c) => c.register(registration({ email })))
    expect(await fail((c) => c.register(registration({ email })))).toEqual(new EmailTaken({ email }))
    const upper = await fail((c) => c.register(registration({ email: email.toUpperCase() })))
    expect(upper).toBeInstanceOf(EmailTaken)
    expect(await fail((c) => c.register(registration({ email: ADMIN_EMAIL.toUpperCase() })))).toBeInstanceOf(EmailTaken)
  })

  it("gives the same InvalidCredentials for a wrong password and an unknown e-mail", async () => {
    const input = registration()
    await call((c) => c.register(input))
    const wrongPassword = await fail((c) => c.login(credentials(input.email, "not the password")))
    const unknownEmail = await fail((c) => c.login(credentials(`nobody-${unique()}@example.com`, "a good password")))
    expect(wrongPassword).toEqual(new InvalidCredentials())
    expect(unknownEmail).toEqual(wrongPassword)
    expect(await fail((c) => c.login(credentials("", "")))).toEqual(new InvalidCredentials())
  })

  it("shows a user to that user and to admins, and to no one else", async () => {
    const user = await call((c) => c.register(registration()))
    expect(await as(userCaller(user)).call((c) => c.getUser({ id: user.id }))).toEqual(user)
    const root = await admin()
    expect(await as(root).call((c) => c.getUser({ id: user.id }))).toEqual(user)

    const other = await customer()
    expect(await as(other).fail((c) => c.getUser({ id: user.id }))).toEqual(new UserNotFound({ userId: user.id }))
    expect(await as(other).fail((c) => c.getUser({ id: unknownUser }))).toEqual(new UserNotFound({ userId: unknownUser }))
    expect(await as(root).fail((c) => c.getUser({ id: unknownUser }))).toEqual(new UserNotFound({ userId: unknownUser }))
    expect(await fail((c) => c.getUser({ id: user.id }))).toBeInstanceOf(Unauthenticated)
  })

  it("creates the configured administrator, who can log in", async () => {
    const root = await admin()
    expect(root.role).toBe("admin")
    expect(await as(root).call((c) => c.me())).toMatchObject({ email: ADMIN_EMAIL, role: "admin" })
  })

  it("lets only admins manage API keys", async () => {
    const someone = await customer()
    const id = ApiKeyId.make("0b6f8f5e-3f7a-4a59-9d57-2a3f1b2c4d5e")
    const attempts: ReadonlyArray<(c: Client) => Effect.Effect<unknown, unknown>> = [
      (c) => c.createApiKey({ name: "ci", role: "admin" }),
      (c) => c.listApiKeys(),
      (c) => c.revokeApiKey({ id }),
      (c) => c.rotateSigningKey()
    ]
    for (const attempt of attempts) {
      expect(await as(someone).fail(attempt)).toBeInstanceOf(Forbidden)
      expect(await fail(attempt)).toBeInstanceOf(Unauthenticated)
    }
  })

  it("issues an API key once, lists keys without it, and authenticates with it until revoked", async () => {
    const root = await admin()
    const issued = await as(root).call((c) => c.createApiKey({ name: "billing", role: "customer" }))
    expect(issued).toBeInstanceOf(IssuedApiKey)
    expect(issued).toMatchObject({ name: "billing", role: "customer", revokedAt: null })
    expect(issued.key).toMatch(/^tsk_[A-Za-z0-9_-]{43}$/)

    const listed = await as(root).call((c) => c.listApiKeys())
    const entry = listed.find((k) => k.id === issued.id)
    expect(entry).toBeInstanceOf(ApiKey)
    expect(entry).not.toHaveProperty("key")
    expect(JSON.stringify(listed)).not.toContain(issued.key)

    const key = Redacted.make(issued.key)
    expect(await call((c) => c.authenticateApiKey({ key }))).toEqual(
      new Caller.Caller({ kind: "apiKey", id: issued.id, role: "customer" })
    )

    const revoked = await as(root).call((c) => c.revokeApiKey({ id: issued.id }))
    expect(revoked).toBeInstanceOf(ApiKey)
    expect(revoked.revokedAt).not.toBeNull()
    expect(await fail((c) => c.authenticateApiKey({ key }))).toBeInstanceOf(Unauthenticated)
    expect(await as(root).call((c) => c.revokeApiKey({ id: issued.id }))).toEqual(revoked)
    const listedAfter = await as(root).call((c) => c.listApiKeys())
    expect(listedAfter.find((k) => k.id === issued.id)).toEqual(revoked)
  })

  it("lists API keys newest first", async () => {
    const root = await admin()
    const first = await as(root).call((c) => c.createApiKey({ name: "first", role: "customer" }))
    const second = await as(root).call((c) => c.createApiKey({ name: "second", role: "admin" }))
    const ids = (await as(root).call((c) => c.listApiKeys())).map((k) => k.id)
    expect(ids.indexOf(second.id)).toBeLessThan(ids.indexOf(first.id))
  })

  it("lets an admin API key act as an admin", async () => {
    const issued = await as(await admin()).call((c) => c.createApiKey({ name: "ops", role: "admin" }))
    const machine = await call((c) => c.authenticateApiKey({ key: Redacted.make(issued.key) }))
    expect(await as(machine).call((c) => c.listApiKeys())).toEqual(expect.any(Array))
  })

  it("refuses unknown, malformed and revoked-id API keys", async () => {
    const root = await admin()
    const id = ApiKeyId.make("0b6f8f5e-3f7a-4a59-9d57-2a3f1b2c4d5e")
    expect(await as(root).fail((c) => c.revokeApiKey({ id }))).toEqual(new ApiKeyNotFound({ apiKeyId: id }))
    for (const key of ["", "tsk_short", "not a key", `tsk_${"A".repeat(43)}`, `xyz_${"A".repeat(43)}`]) {
      const error = await fail((c) => c.authenticateApiKey({ key: Redacted.make(key) }))
      expect(error).toBeInstanceOf(Unauthenticated)
      if (key !== "") expect(error.reason).not.toContain(key)
    }
  })

  it("rotates the signing key: old tokens still verify, new ones carry the new kid", async () => {
    const input = registration()
    await call((c) => c.register(input))
    const before = await call((c) => c.login(credentials(input.email, "a good password")))
    const oldKid = decodeProtectedHeader(before.accessToken).kid

    const rotated = await as(await admin()).call((c) => c.rotateSigningKey())
    expect(rotated.kid).not.toBe(oldKid)

    const jwks = await call((c) => c.jwks())
    expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([rotated.kid, oldKid]))
    await verify(before.accessToken, jwks)

    const after = await call((c) => c.login(credentials(input.email, "a good password")))
    expect(decodeProtectedHeader(after.accessToken).kid).toBe(rotated.kid)
    await verify(after.accessToken, jwks)

    for (const key of jwks.keys) {
      expect(key).not.toHaveProperty("d")
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"])
      expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" })
    }
  })
})

/** An admin connection to the test database, to look at identity's tables from outside. */
const adminSql = <A, E>(database: TestHost.Database, f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.scoped(
    database._tag === "Postgres"
      ? Effect.flatMap(PgClient.make({ url: Redacted.make(database.url), maxConnections: 1 }), f).pipe(
        Effect.provide(Reactivity.layer)
      )
      : Effect.flatMap(EmbeddedPostgres, f).pipe(
        Effect.provide(EmbeddedPostgres.layer),
        Effect.provide(
          Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["TESSERA_DATA_DIR", database.dataDir]])))
        )
      )
  ))

/** Starts identity on `database` as a process would, runs `f` against its client, stops it. */
const started = async <A>(
  database: TestHost.Database,
  extra: Record<string, string>,
  f: (call: <B, E>(g: (client: Client) => Effect.Effect<B, E>) => Promise<B>) => Promise<A>
) => {
  const runtime = ManagedRuntime.make(TestHost.layer([IdentityModule], database, [], { ...config, ...extra }))
  try {
    await runtime.runtime()
    return await f((g) => runtime.runPromise(Effect.flatMap(IdentityClient, g)))
  } finally {
    await runtime.dispose()
  }
}

// Each test here starts (and stops) identity itself, so that it can start it more than once on
// one database and read the tables in between.
let database: TestHost.Database
const STARTS_TIMEOUT = 120_000
TestHost.describeOnDatabases("identity across starts", (db) => {
  database = db
  return Layer.empty
}, () => {
  it("creates the administrator once, however many times and replicas start", async () => {
    if (database._tag === "Postgres") {
      // Two replicas starting together on PostgreSQL; embedded has one process per data directory.
      await Promise.all([started(database, {}, async () => {}), started(database, {}, async () => {})])
    }
    await started(database, {}, async () => {})
    await started(database, {}, async (call) => {
      expect(await call((c) => c.login(credentials(ADMIN_EMAIL, ADMIN_PASSWORD)))).toBeInstanceOf(AccessToken)
    })
    const admins = await adminSql(database, (sql) =>
      sql<{ email: string; role: string }>`SELECT email, role FROM identity.users WHERE role = 'admin'`)
    expect(admins).toEqual([{ email: ADMIN_EMAIL, role: "admin" }])
  }, STARTS_TIMEOUT)

  it("stores passwords only as salted scrypt hashes", async () => {
    const email = `stored-${unique()}@example.com`
    await started(database, {}, (call) => call((c) => c.register(registration({ email }))))
    const rows = await adminSql(database, (sql) =>
      sql<{ password_hash: string }>`SELECT password_hash FROM identity.users WHERE email = ${email}`)
    expect(rows).toHaveLength(1)
    expect(rows[0]!.password_hash).toMatch(/^scrypt\$10\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/)
    expect(rows[0]!.password_hash).not.toContain("a good password")
  }, STARTS_TIMEOUT)

  it("upgrades a password hash to the current cost at login", async () => {
    const email = `upgrade-${unique()}@example.com`
    await started(database, {}, (call) => call((c) => c.register(registration({ email }))))
    await started(database, { TESSERA_PASSWORD_HASH_COST: "11" }, (call) =>
      call((c) => c.login(credentials(email, "a good password"))))
    const rows = await adminSql(database, (sql) =>
      sql<{ password_hash: string }>`SELECT password_hash FROM identity.users WHERE email = ${email}`)
    expect(rows[0]!.password_hash).toMatch(/^scrypt\$11\$/)
  }, STARTS_TIMEOUT)

  it("rotates a signing key that has grown older than TESSERA_SIGNING_KEY_ROTATION when it signs", async () => {
    const email = `rotation-${unique()}@example.com`
    await started(database, { TESSERA_SIGNING_KEY_ROTATION: "50 millis" }, async (call) => {
      await call((c) => c.register(registration({ email })))
      const first = await call((c) => c.login(credentials(email, "a good password")))
      await new Promise((resolve) => setTimeout(resolve, 100))
      const second = await call((c) => c.login(credentials(email, "a good password")))
      expect(decodeProtectedHeader(second.accessToken).kid).not.toBe(decodeProtectedHeader(first.accessToken).kid)
      const jwks = await call((c) => c.jwks())
      await verify(first.accessToken, jwks)
      await verify(second.accessToken, jwks)
    })
    const active = await adminSql(database, (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM identity.signing_keys WHERE retired_at IS NULL`)
    expect(active).toEqual([{ n: 1 }])
  }, STARTS_TIMEOUT)
})
