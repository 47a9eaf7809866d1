/**
 * A signing-key rotation is seen by the first token the new key signs:
 *
 * - the gateway's key cache (IdentityAuthenticator), against a stubbed identity: a token whose
 *   key it has not seen is verified after one refetch, even right after another fetch; a flood
 *   of unknown key ids costs one fetch at a time, at most one per REFETCH_INTERVAL; in the
 *   process that rotated, the refetch begins at once;
 *   a token verified before is verified again (and refused) once a new key set without its key
 *   is held;
 * - end to end, in one process and split across two: rotate, log in, and the new token works
 *   at once, twice in a row.
 */
import { Duration, Effect, Either, Layer, ManagedRuntime, Redacted } from "effect"
import * as jose from "jose"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Processes from "../../runtime/testing/Processes.ts"
import * as Services from "../../runtime/testing/Services.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import * as TestServer from "../../runtime/testing/TestServer.ts"
import { IdentityClient, JsonWebKeySet, type PublicJwk, TOKEN_AUDIENCE, TOKEN_ISSUER } from "./IdentityApi.ts"
import { IdentityAuthenticator, REFETCH_INTERVAL } from "./IdentityAuth.ts"
import { modules } from "../../main.ts"
import { IdentityModule } from "./IdentityModule.ts"
import { KeyGeneration } from "./internal/KeyGeneration.ts"

const INTERVAL_MS = Duration.toMillis(REFETCH_INTERVAL)

interface SigningKey {
  readonly kid: string
  readonly publicJwk: PublicJwk
  readonly sign: (subject: string) => Promise<string>
}

const signingKey = async (): Promise<SigningKey> => {
  const { privateKey, publicKey } = await jose.generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true })
  const jwk = await jose.exportJWK(publicKey)
  const kid = await jose.calculateJwkThumbprint(jwk)
  return {
    kid,
    publicJwk: { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, kid, alg: "EdDSA", use: "sig" },
    sign: (subject) =>
      new jose.SignJWT({ role: "customer" })
        .setProtectedHeader({ alg: "EdDSA", kid, typ: "JWT" })
        .setSubject(subject)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("5m")
        .sign(privateKey)
  }
}

describe("the gateway's key cache", () => {
  /** What the stubbed identity publishes, and how it has been asked. */
  const published: Array<PublicJwk> = []
  const fetches = { count: 0, running: 0, mostAtOnce: 0 }
  const identity = TestHost.stub(IdentityClient, {
    jwks: () =>
      Effect.gen(function*() {
        fetches.count += 1
        fetches.running += 1
        fetches.mostAtOnce = Math.max(fetches.mostAtOnce, fetches.running)
        const keys = [...published]
        yield* Effect.sleep("20 millis")
        fetches.running -= 1
        return new JsonWebKeySet({ keys })
      })
  })
  const runtime = ManagedRuntime.make(
    Layer.provide(IdentityAuthenticator, identity.layer as Layer.Layer<IdentityClient>)
  )
  afterAll(() => runtime.dispose())

  const authenticate = (token: string) =>
    runtime.runPromise(
      Effect.flatMap(Auth.Authenticator, (a) => Effect.either(a.authenticate({ _tag: "Bearer", token: Redacted.make(token) })))
    )
  const timed = async <A>(f: () => Promise<A>) => {
    const started = performance.now()
    const result = await f()
    return { result, millis: performance.now() - started }
  }
  const forged = async () => (await signingKey()).sign("mallory")

  let first: SigningKey
  beforeAll(async () => {
    first = await signingKey()
    published.push(first.publicJwk)
    expect(Either.isRight(await authenticate(await first.sign("ana")))).toBe(true)
    expect(fetches.count).toBe(1)
  })

  it("verifies a token signed by a key it has not seen after one refetch, even right after a fetch", async () => {
    // Rotated elsewhere: only the published set changes.
    const second = await signingKey()
    published.unshift(second.publicJwk)
    const before = fetches.count
    const verified = await authenticate(await second.sign("ana"))
    expect(verified).toMatchObject({ _tag: "Right", right: { kind: "user", id: "ana" } })
    expect(fetches.count).toBe(before + 1)
    // Known now: no more fetches.
    expect(Either.isRight(await authenticate(await second.sign("bea")))).toBe(true)
    expect(Either.isRight(await authenticate(await first.sign("bea")))).toBe(true)
    expect(fetches.count).toBe(before + 1)
  })

  it("spends one fetch at a time on a flood of unknown key ids, at most one per interval, and refuses them all", async () => {
    const tokens = await Promise.all(Array.from({ length: 100 }, forged))
    const before = fetches.count
    const { millis, result } = await timed(() => Promise.all(tokens.map(authenticate)))
    expect(result.every((r) => Either.isLeft(r) && /not signed by a current identity key/.test(r.left.reason))).toBe(true)
    // All the flood waited for one fetch that began after they arrived, and for nothing more.
    expect(fetches.count - before).toBe(1)
    expect(fetches.mostAtOnce).toBe(1)

    // Forged key ids one after another for two intervals: one fetch per interval at most.
    const sequential = fetches.count
    const until = performance.now() + 2 * INTERVAL_MS
    let refused = 0
    while (performance.now() < until) {
      if (Either.isLeft(await authenticate(await forged()))) refused += 1
    }
    expect(refused).toBeGreaterThan(0)
    expect(fetches.count - sequential).toBeLessThanOrEqual(3)
    expect(fetches.mostAtOnce).toBe(1)
    expect(millis).toBeLessThan(INTERVAL_MS * 3)
  })

  it("during a flood, still verifies a new key's token after one refetch", async () => {
    const flood = Promise.all((await Promise.all(Array.from({ length: 20 }, forged))).map(authenticate))
    const third = await signingKey()
    published.unshift(third.publicJwk)
    expect(Either.isRight(await authenticate(await third.sign("ana")))).toBe(true)
    await flood
  })

  it("in the process that rotated, begins the refetch at once", async () => {
    // A forged key id has just made the cache fetch: the next fetch would wait an interval.
    await authenticate(await forged())
    const fourth = await signingKey()
    published.unshift(fourth.publicJwk)
    KeyGeneration.advance()
    const { millis, result } = await timed(async () => authenticate(await fourth.sign("ana")))
    expect(Either.isRight(result)).toBe(true)
    expect(millis).toBeLessThan(INTERVAL_MS / 2)
  })

  it("verifies a token again once a new key set is held: a withdrawn key's token, verified before, is refused", async () => {
    const withdrawn = await signingKey()
    published.unshift(withdrawn.publicJwk)
    KeyGeneration.advance()
    const token = await withdrawn.sign("cara")
    expect(Either.isRight(await authenticate(token))).toBe(true)
    // Verified once: asked again, it is the same caller, with no fetch.
    const before = fetches.count
    expect(await authenticate(token)).toMatchObject({ _tag: "Right", right: { id: "cara" } })
    expect(fetches.count).toBe(before)
    // The key is withdrawn and another published; a token of the new key brings the new set in.
    published.splice(published.indexOf(withdrawn.publicJwk), 1)
    const next = await signingKey()
    published.unshift(next.publicJwk)
    KeyGeneration.advance()
    expect(Either.isRight(await authenticate(await next.sign("dan")))).toBe(true)
    expect(await authenticate(token)).toMatchObject({ _tag: "Left" })
  })
})

const ADMIN = { email: "rotation-admin@example.com", password: "admin password 1" }
const SETTINGS = {
  TESSERA_PASSWORD_HASH_COST: "10",
  TESSERA_ADMIN_EMAIL: ADMIN.email,
  TESSERA_ADMIN_PASSWORD: ADMIN.password,
  TESSERA_RATE_LIMIT: "0"
}

/** Rotates twice at `gateway`, logging in after each: every new token works at once, and so do the old. */
const rotateAndUse = async (gateway: string) => {
  const call = (route: string, init: { token?: string; json?: unknown; method?: string } = {}) =>
    fetch(`${gateway}${route}`, {
      method: init.method ?? (init.json === undefined ? "GET" : "POST"),
      headers: {
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
        ...(init.json === undefined ? {} : { "content-type": "application/json" })
      },
      ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) })
    })
  const login = async () => {
    const response = await call("/v1/auth/login", { json: ADMIN })
    expect(response.status).toBe(200)
    return ((await response.json()) as { accessToken: string }).accessToken
  }
  const kidOf = (token: string) => jose.decodeProtectedHeader(token).kid
  const tokens = [await login()]
  expect((await call("/v1/me", { token: tokens[0] })).status).toBe(200)
  for (let round = 0; round < 2; round++) {
    const rotated = await call("/v1/auth/signing-keys", { token: tokens[tokens.length - 1], method: "POST" })
    expect(rotated.status).toBe(201)
    const token = await login()
    expect(kidOf(token)).toBe(((await rotated.json()) as { kid: string }).kid)
    const me = await call("/v1/me", { token })
    expect(me.status, await me.clone().text()).toBe(200)
    tokens.push(token)
  }
  for (const token of tokens) expect((await call("/v1/me", { token })).status).toBe(200)
  expect(new Set(tokens.map(kidOf)).size).toBe(3)
}

describe("a rotation, end to end", () => {
  it("in one process: the new token works at once", async () => {
    const server = await TestServer.startOnTestDatabase([IdentityModule], SETTINGS)
    try {
      await rotateAndUse(server.url)
    } finally {
      await server.close()
    }
  })

  it("split across processes (identity alone, the gateway in this one): the new token works at once", async () => {
    const postgres = await Services.findPostgres()
    const cleanups: Array<() => Promise<unknown>> = []
    const database = async (): Promise<Record<string, string>> => {
      if (postgres.ok) {
        const db = await Services.createDatabase(postgres.value)
        cleanups.push(db.drop)
        return { DATABASE_URL: db.url }
      }
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-rotation-"))
      cleanups.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }))
      return { TESSERA_DATA_DIR: dataDir }
    }
    const env = { ...SETTINGS, TESSERA_SERVICE_SECRET: "rotation-test-secret-rotation-test-secret" }
    const identity = Processes.spawnServer(await Processes.freePort(), { ...env, ...(await database()), TESSERA_MODULES: "identity" })
    cleanups.unshift(() => identity.stop())
    try {
      await Processes.waitReady(identity)
      const gateway = await TestServer.start(modules, {
        ...env,
        ...(await database()),
        TESSERA_MODULES: "gateway,catalog,inventory,orders,payments,shipping,notifications",
        TESSERA_PEERS: `identity=${identity.url}`
      })
      cleanups.unshift(() => gateway.close())
      await rotateAndUse(gateway.url)
    } finally {
      for (const cleanup of cleanups) await cleanup()
    }
  }, 90_000)
})
