import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted } from "effect"
import * as Passwords from "./Passwords.ts"

const atCost = (cost: number) =>
  Passwords.Passwords.Default.pipe(
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["TESSERA_PASSWORD_HASH_COST", String(cost)]]))))
  )

const secret = Redacted.make("correct horse battery staple")

describe("Passwords", () => {
  it.effect("hashes into a self-describing string and verifies it", () =>
    Effect.gen(function*() {
      const passwords = yield* Passwords.Passwords
      const stored = yield* passwords.hash(secret)
      expect(stored).toMatch(/^scrypt\$10\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/)
      expect(stored).not.toContain("horse")
      expect(yield* passwords.verify(secret, stored)).toBe(true)
      expect(yield* passwords.verify(Redacted.make("correct horse battery stapler"), stored)).toBe(false)
    }).pipe(Effect.provide(atCost(10))))

  it.effect("salts each hash", () =>
    Effect.gen(function*() {
      const passwords = yield* Passwords.Passwords
      expect(yield* passwords.hash(secret)).not.toBe(yield* passwords.hash(secret))
    }).pipe(Effect.provide(atCost(10))))

  it.effect("verifies a hash made at an older cost, and says it needs rehashing", () =>
    Effect.gen(function*() {
      const old = yield* Passwords.hashWith(secret, { log2N: 4, r: 8, p: 1 })
      const passwords = yield* Passwords.Passwords
      expect(yield* passwords.verify(secret, old)).toBe(true)
      expect(passwords.needsRehash(old)).toBe(true)
      expect(passwords.needsRehash(yield* passwords.hash(secret))).toBe(false)
    }).pipe(Effect.provide(atCost(10))))

  it.effect.each([
    "",
    "plain text",
    "bcrypt$10$8$1$c2FsdA==$aGFzaA==",
    "scrypt$40$8$1$c2FsdA==$aGFzaA==",
    "scrypt$x$8$1$c2FsdA==$aGFzaA==",
    "scrypt$10$8$1$$aGFzaA=="
  ])("refuses the unreadable hash %j", (stored) =>
    Effect.gen(function*() {
      const passwords = yield* Passwords.Passwords
      expect(yield* passwords.verify(secret, stored)).toBe(false)
      expect(passwords.needsRehash(stored)).toBe(true)
    }).pipe(Effect.provide(atCost(10))))

  it.effect("verifies against a dummy without failing", () =>
    Effect.gen(function*() {
      const passwords = yield* Passwords.Passwords
      yield* passwords.verifyDummy(secret)
    }).pipe(Effect.provide(atCost(10))))

  it("refuses a cost out of bounds", async () => {
    const exit = await Effect.runPromiseExit(Effect.provide(Passwords.Passwords, atCost(40)))
    expect(exit._tag).toBe("Failure")
  })
})
