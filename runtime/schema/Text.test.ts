import { Effect, Either, ParseResult, Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Text from "./Text.ts"

/** The messages a decode failure renders, as the gateway's problems list them. */
const messages = (schema: Schema.Schema<any, any>, input: unknown): ReadonlyArray<string> => {
  const result = Schema.decodeUnknownEither(Schema.Struct({ field: schema }))({ field: input }, { errors: "all" })
  if (Either.isRight(result)) return []
  return Effect.runSync(ParseResult.ArrayFormatter.formatError(result.left)).map((issue) => issue.message)
}
const decode = <A>(schema: Schema.Schema<A, any>, input: unknown) => Schema.decodeUnknownSync(schema)(input)

let deep: unknown = "x"
for (let i = 0; i < 20_000; i++) deep = [deep]
const huge = Array.from({ length: 200_000 }, () => "secret-value")

/** Values no text field accepts, with what the refusal must say. */
const hostile: ReadonlyArray<readonly [string, string, RegExp]> = [
  ["NUL", "a\u0000b", /NUL/],
  ["a C0 control", "a\u0007b", /control character U\+0007/],
  ["DEL", "a\u007fb", /U\+007F/],
  ["a C1 control", "a\u0085b", /U\+0085/],
  ["a lone high surrogate", "a\ud800b", /lone surrogate/],
  ["a lone low surrogate", "a\udc00", /lone surrogate/],
  ["a right-to-left override", "abc\u202egpj.exe", /bidirectional/],
  ["an isolate", "a\u2066b", /bidirectional/],
  ["a line separator", "a\u2028b", /separator/]
]

const schemas = {
  line: Text.line({ maxLength: 20 }),
  multiline: Text.multiline({ maxLength: 20 }),
  query: Text.query({ maxLength: 20 }),
  email: Text.email,
  emailLookup: Text.emailLookup
}

describe("Text", () => {
  for (const [name, schema] of Object.entries(schemas)) {
    describe(name, () => {
      for (const [what, value, reason] of hostile) {
        if (name === "multiline" && what === "a line separator") continue
        it(`refuses ${what}, saying why and without quoting the value`, () => {
          const found = messages(schema, value)
          expect(found).toHaveLength(1)
          expect(found[0]).toMatch(reason)
          expect(found[0]).not.toContain(value)
        })
      }
      it("refuses a value that is not a string without formatting it, however deep or large", () => {
        for (const value of [deep, huge, { a: deep }, 42, null, true]) {
          expect(messages(schema, value)).toEqual(["expected a string"])
        }
      })
      it("refuses an over-long value without quoting it", () => {
        const found = messages(schema, "x".repeat(300) + "@example.com")
        expect(found).toHaveLength(1)
        expect(found[0]).toMatch(/at most \d+ characters/)
        expect(found[0]!.length).toBeLessThan(80)
      })
    })
  }

  it("normalises a line to NFC and trims it", () => {
    expect(decode(schemas.line, "  Jose\u0301  ")).toBe("Jos\u00e9")
  })

  it("refuses a line that is empty or only whitespace, unless empty is allowed", () => {
    for (const blank of ["", "   ", "\u3000", "\u00a0"]) {
      expect(messages(schemas.line, blank)).toEqual(["must not be empty or only whitespace"])
      expect(decode(schemas.query, blank)).toBe("")
    }
  })

  it("refuses line breaks and tabs in a line, and keeps them in multi-line text (CR LF as LF)", () => {
    expect(messages(schemas.line, "a\nb")[0]).toMatch(/U\+000A/)
    expect(messages(schemas.line, "a\tb")[0]).toMatch(/U\+0009/)
    expect(decode(schemas.multiline, "a\r\nb\rc\td")).toBe("a\nb\nc\td")
  })

  it("keeps right-to-left text and its implicit marks", () => {
    expect(decode(schemas.line, "\u05e9\u05dc\u05d5\u05dd \u200fabc")).toBe("\u05e9\u05dc\u05d5\u05dd \u200fabc")
  })

  describe("email", () => {
    it("is canonical: NFKC, trimmed, lower-cased", () => {
      expect(decode(Text.email, "  Ana@Example.COM ")).toBe("ana@example.com")
      expect(decode(Text.email, "\uff41\uff4e\uff41@example.com")).toBe("ana@example.com")
      expect(decode(Text.emailLookup, "Jose\u0301@Example.com")).toBe(decode(Text.emailLookup, "Jos\u00e9@example.com"))
    })

    it("refuses look-alikes: zero-width characters, other scripts, combining accents", () => {
      const lookAlikes = [
        "an\u200ba@example.com",
        "\u0430na@example.com",
        "ana@ex\u0430mple.com",
        "jose\u0301@example.com",
        "jos\u00e9@example.com",
        "ana@b\u00fccher.de"
      ]
      for (const lookAlike of lookAlikes) {
        const found = messages(Text.email, lookAlike)
        expect(found, lookAlike).toHaveLength(1)
        expect(found[0]).toMatch(/ASCII/)
      }
      expect(decode(Text.email, "ana@xn--bcher-kva.de")).toBe("ana@xn--bcher-kva.de")
    })

    it("refuses what is not an address", () => {
      const notAddresses = ["ana", "@example.com", "ana@", "ana@example", "a..b@example.com", "ana@-x.com", "a b@example.com"]
      for (const notAnAddress of [...notAddresses, "ana@exa_mple.com"]) {
        expect(messages(Text.email, notAnAddress), notAnAddress).toHaveLength(1)
      }
      expect(messages(Text.email, `${"a".repeat(65)}@example.com`)[0]).toMatch(/64/)
    })
  })

  describe("secret", () => {
    const password = Text.secret({ minLength: 8, maxLength: 64 })

    it("keeps any character as sent, but NUL and lone surrogates", () => {
      const odd = "  p\u0007\u202e\u00e9ss\tword \n"
      expect(decode(password, odd)).toBe(odd)
      expect(messages(password, "passw\u0000rd")[0]).toMatch(/NUL/)
      expect(messages(password, "passw\ud800rd")[0]).toMatch(/lone surrogate/)
    })

    it("never quotes the secret", () => {
      for (const value of ["short", "x".repeat(100), "secret\u0000secret", "secret\udc00secret"]) {
        for (const message of messages(password, value)) expect(message).not.toContain(value.slice(0, 5))
      }
    })
  })

  it("checks a code against its pattern as sent", () => {
    const code = Text.code(/^[A-Z]{3}$/, "expected three capital letters")
    expect(decode(code, "EUR")).toBe("EUR")
    expect(messages(code, "EU\u0000")).toEqual(["expected three capital letters"])
    expect(messages(code, deep)).toEqual(["expected a string"])
  })
})
