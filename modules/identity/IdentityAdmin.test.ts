/**
 * The configured administrator when its address is already taken: someone registered
 * TESSERA_ADMIN_EMAIL before the operator set it. That user becomes the administrator only if
 * its password is TESSERA_ADMIN_PASSWORD; otherwise identity refuses to start, naming the variable.
 */
import { Effect, ManagedRuntime, Redacted } from "effect"
import { decodeJwt } from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Services from "../../runtime/testing/Services.ts"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import { IdentityClient } from "./IdentityApi.ts"
import { IdentityModule } from "./IdentityModule.ts"

type Client = IdentityClient["Type"]

/** Starts identity on `database` with `config`, runs `f` against its client, stops it. */
const started = async <A>(
  database: TestHost.Database,
  config: Record<string, string>,
  f: (call: <B, E>(g: (client: Client) => Effect.Effect<B, E>) => Promise<B>) => Promise<A>
) => {
  const runtime = ManagedRuntime.make(
    TestHost.layer([IdentityModule], database, [], { TESSERA_PASSWORD_HASH_COST: "10", ...config })
  )
  try {
    await runtime.runtime()
    return await f((g) => runtime.runPromise(Effect.flatMap(IdentityClient, g)))
  } finally {
    await runtime.dispose()
  }
}

const roleAfterLogin = (call: <B, E>(g: (client: Client) => Effect.Effect<B, E>) => Promise<B>, email: string, password: string) =>
  call((c) => c.login({ email, password: Redacted.make(password) })).then((token) => decodeJwt(token.accessToken).role)

// On PostgreSQL only: the rule is identity's, not the database's, and four starts of embedded
// PostgreSQL cost half a minute (Identity.test.ts starts identity on both).
const postgres = await Services.findPostgres()
describe.skipIf(!postgres.ok)("identity's configured administrator, when its address is taken", () => {
  let database: TestHost.Database
  let drop: () => Promise<void> = async () => {}
  beforeAll(async () => {
    const db = await Services.createDatabase((postgres as { value: string }).value)
    database = { _tag: "Postgres", url: db.url }
    drop = db.drop
  })
  afterAll(() => drop())

  it("refuses to start unless the user's password is TESSERA_ADMIN_PASSWORD, and then makes that user admin", async () => {
    const email = `early-${Math.random().toString(36).slice(2, 10)}@example.com`
    const password = "the early bird's password"
    await started(database, {}, (call) =>
      call((c) => c.register({ email, password: Redacted.make(password), name: "Early" })))

    const refused = await started(
      database,
      { TESSERA_ADMIN_EMAIL: email, TESSERA_ADMIN_PASSWORD: "the operator's password" },
      async () => "started"
    ).catch((error: unknown) => String(error))
    expect(refused).toMatch(/TESSERA_ADMIN_EMAIL belongs to a user who is not an administrator/)
    expect(refused).toContain("TESSERA_ADMIN_PASSWORD")
    expect(refused).not.toContain(password)
    expect(await started(database, {}, (call) => roleAfterLogin(call, email, password))).toBe("customer")

    const role = await started(
      database,
      { TESSERA_ADMIN_EMAIL: email.toUpperCase(), TESSERA_ADMIN_PASSWORD: password },
      (call) => roleAfterLogin(call, email, password)
    )
    expect(role).toBe("admin")
  }, 180_000)
})
