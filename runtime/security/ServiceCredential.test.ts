/** The service credential on its own: what the client adds, what the endpoint accepts. */
import { Headers } from "@effect/platform"
import { Rpc, RpcClient, type RpcMiddleware } from "@effect/rpc"
import { Cause, ConfigProvider, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import * as jose from "jose"
import { describe, expect, it } from "vitest"
import * as Caller from "./Caller.ts"
import * as ServiceCredential from "./ServiceCredential.ts"

const secret = Redacted.make("a-test-secret-that-is-long-enough-1234")
const rpc = Rpc.make("ping", { success: Schema.String }) as unknown as Rpc.AnyWithProps

/** The headers the client middleware puts on a request from `caller` to `module`. */
const signed = (module: string, caller = "gateway") =>
  Effect.runPromise(
    Effect.gen(function*() {
      const context = yield* Layer.build(ServiceCredential.client(secret, caller, module))
      const middleware = context.unsafeMap.get(`${ServiceCredential.ServiceAuth.key}/Client`) as RpcMiddleware.RpcMiddlewareClient
      const request = yield* middleware({ rpc, request: { headers: Headers.empty } as never })
      return request.headers
    }).pipe(Effect.scoped)
  )

/**
 * Runs a call through the endpoint middleware of `module` in a fiber whose own headers are
 * `ambient`; the handler returns the caller its module calls would carry.
 */
const serve = (module: string, headers: Headers.Headers, ambient: Record<string, string> = {}) =>
  Effect.runPromiseExit(RpcClient.withHeaders(
    ServiceCredential.server(secret, module)({
      clientId: 1,
      rpc,
      payload: {},
      headers,
      next: Effect.map(
        Effect.flatMap(RpcClient.currentHeaders, (current) => Effect.succeed(Caller.fromHeaders(current))),
        (caller) => caller as never
      ) as never
    }) as unknown as Effect.Effect<Option.Option<Caller.Caller>, ServiceCredential.ServiceCredentialRefused>,
    ambient
  ))

const refusal = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe("ServiceCredential", () => {
  it("lets a call with the credential for this module through, with the caller it carries", async () => {
    const headers = await signed("inventory")
    const caller = new Caller.Caller({ kind: "user", id: "u-1", role: "customer" })
    const exit = await serve("inventory", Headers.merge(headers, Headers.fromInput(Caller.toHeaders(caller))))
    expect(exit).toEqual(Exit.succeed(Option.some(caller)))
    // Accepted again from the cache of verified tokens.
    expect(Exit.isSuccess(await serve("inventory", headers))).toBe(true)
  })

  it("refuses a call with no credential, one for another module, or one signed with another secret", async () => {
    expect(refusal(await serve("inventory", Headers.empty))).toMatchObject({ reason: "the call carries no service credential" })
    expect(refusal(await serve("inventory", await signed("catalog")))).toMatchObject({ reason: "the service credential is not valid" })
    const forged = await new jose.SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer("tessera/service")
      .setAudience("inventory").setExpirationTime("5m").sign(new TextEncoder().encode("another-secret-another-secret-12345"))
    expect(refusal(await serve("inventory", Headers.fromInput({ "x-tessera-service": forged })))).toMatchObject({
      reason: "the service credential is not valid"
    })
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url")}.${
      Buffer.from(JSON.stringify({ iss: "tessera/service", aud: "inventory", exp: 9e9 })).toString("base64url")
    }.`
    expect(refusal(await serve("inventory", Headers.fromInput({ "x-tessera-service": unsigned })))).toBeInstanceOf(
      ServiceCredential.ServiceCredentialRefused
    )
  })

  it("refuses an expired credential", async () => {
    const expired = await new jose.SignJWT({}).setProtectedHeader({ alg: "HS256" }).setIssuer("tessera/service")
      .setAudience("inventory").setIssuedAt(1_000).setExpirationTime(1_300).sign(new TextEncoder().encode(Redacted.value(secret)))
    expect(refusal(await serve("inventory", Headers.fromInput({ "x-tessera-service": expired })))).toMatchObject({
      reason: "the service credential has expired"
    })
  })

  it("passes on no caller but the one the call carries", async () => {
    const someoneElse = { "x-tessera-caller-kind": "user", "x-tessera-caller-id": "someone-else", "x-tessera-caller-role": "admin" }
    const headers = await signed("inventory")
    expect(await serve("inventory", headers, someoneElse)).toEqual(Exit.succeed(Option.none()))
    const caller = new Caller.Caller({ kind: "apiKey", id: "k-1", role: "customer" })
    const carried = Headers.merge(headers, Headers.fromInput(Caller.toHeaders(caller)))
    expect(await serve("inventory", carried, someoneElse)).toEqual(Exit.succeed(Option.some(caller)))
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
