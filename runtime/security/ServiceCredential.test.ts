/** The service credential on its own: what a client presents, what an endpoint accepts. */
import { ConfigProvider, Effect, Either, Exit, Option, Redacted } from "effect"
import * as jose from "jose"
import { describe, expect, it } from "vitest"
import { Buffer } from "node:buffer"
import * as ServiceCredential from "./ServiceCredential.ts"

const secret = Redacted.make("a-test-secret-that-is-long-enough-1234")
const key = new TextEncoder().encode(Redacted.value(secret))

const verify = (module: string, token: string | undefined) =>
  Effect.runPromise(Effect.either(ServiceCredential.verifier(secret, module)(token)))

const reason = (result: Either.Either<number, ServiceCredential.ServiceCredentialRefused>) =>
  Either.isLeft(result) ? result.left.reason : undefined

describe("ServiceCredential", () => {
  it("accepts the credential a client signs for this module, and says when it expires", async () => {
    const issuer = ServiceCredential.issuer(secret, "gateway,catalog", "inventory")
    const credential = await issuer.current()
    const result = await verify("inventory", credential.token)
    expect(result).toEqual(Either.right(credential.expiresAt))
    expect(credential.expiresAt - Date.now()).toBeGreaterThan(290_000)
    const { payload } = await jose.jwtVerify(credential.token, key)
    expect(payload).toMatchObject({ sub: "gateway,catalog", aud: "inventory", iss: "tessera/service" })
  })

  it("hands out the same credential until it is due, then a new one, renewed before it expires", async () => {
    const issuer = ServiceCredential.issuer(secret, "gateway", "inventory", 2)
    const first = await issuer.current()
    expect(await issuer.current()).toBe(first)
    // Renewed halfway through a short lifetime (a minute early for the five-minute default).
    expect(issuer.renewalTime(first)).toBe(first.expiresAt - 1_000)
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    const second = await issuer.current()
    expect(second.token).not.toBe(first.token)
  })

  it("refuses no credential, one for another module, one signed with another secret, and an unsigned one", async () => {
    expect(reason(await verify("inventory", undefined))).toBe("no service credential was presented")
    const forCatalog = await ServiceCredential.issuer(secret, "gateway", "catalog").current()
    expect(reason(await verify("inventory", forCatalog.token))).toBe("the service credential's aud claim is not valid (check_failed)")
    const forged = await new jose.SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer("tessera/service")
      .setAudience("inventory").setExpirationTime("5m").sign(new TextEncoder().encode("another-secret-another-secret-12345"))
    expect(reason(await verify("inventory", forged))).toBe("the service credential's signature is not valid")
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url")}.${
      Buffer.from(JSON.stringify({ iss: "tessera/service", aud: "inventory", exp: 9e9 })).toString("base64url")
    }.`
    expect(reason(await verify("inventory", unsigned))).toMatch(/not signed with HS256|malformed/)
  })

  it("refuses an expired credential", async () => {
    const expired = await new jose.SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer("tessera/service")
      .setAudience("inventory").setIssuedAt(1_000).setExpirationTime(1_300).sign(key)
    expect(reason(await verify("inventory", expired))).toBe("the service credential has expired")
  })

  it("reads the secret from TESSERA_SERVICE_SECRET and refuses a short one", async () => {
    const read = (value: string | undefined) =>
      Effect.runPromiseExit(
        Effect.withConfigProvider(
          ServiceCredential.secretFromConfig,
          ConfigProvider.fromMap(new Map(value === undefined ? [] : [["TESSERA_SERVICE_SECRET", value]]))
        )
      )
    expect(await read(undefined)).toEqual(Exit.succeed(Option.none()))
    const ok = await read(Redacted.value(secret))
    expect(Exit.isSuccess(ok) && Option.map(ok.value, Redacted.value)).toEqual(Option.some(Redacted.value(secret)))
    expect(Exit.isFailure(await read("short"))).toBe(true)
  })
})
