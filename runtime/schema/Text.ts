/**
 * The text every contract accepts from outside: one set of Schemas for every text field of every
 * module (names, descriptions, e-mail addresses, searches, passwords, codes), so that what a
 * field refuses is decided once.
 *
 * Every schema here
 * - refuses a value that is not a string with "expected a string", never quoting the value (a
 *   deep or huge value is never formatted, and a secret never comes back in an error);
 * - names what is wrong in its message ("contains the control character U+0000"), never the value;
 * - refuses what cannot be stored or shown faithfully: NUL and the other C0 and C1 control
 *   characters, lone UTF-16 surrogates (UTF-8 cannot carry them: PostgreSQL would refuse them or
 *   they would become U+FFFD), and the bidirectional overrides and isolates (U+202A-U+202E,
 *   U+2066-U+2069) that make text display in another order than it is stored. The implicit marks
 *   (U+200E, U+200F, U+061C) are allowed: right-to-left text needs them and they reorder nothing
 *   around them.
 *
 * Lengths count UTF-16 code units (JavaScript's `length`), as `Schema.maxLength` does; the limit
 * is checked on the text as sent (so the OpenAPI document states it) and again once normalised.
 */
import { Schema } from "effect"

/** A string. Any other JSON value is refused with a message that does not quote it. */
export const string: Schema.Schema<string> = Schema.String.annotations({ message: () => "expected a string" })

const hex = (code: number) => `U+${code.toString(16).toUpperCase().padStart(4, "0")}`

/** Which control characters a field lets through. */
type Controls = "none" | "line breaks and tabs" | "all but NUL"

/** What the text contains that the field does not accept, or `undefined`. */
const refusal = (text: string, controls: Controls): string | undefined => {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++
        continue
      }
      return `contains a lone surrogate (${hex(code)}), which is not text`
    }
    if (code >= 0xdc00 && code <= 0xdfff) return `contains a lone surrogate (${hex(code)}), which is not text`
    if (code === 0) return "contains the NUL character (U+0000)"
    if (controls === "all but NUL") continue
    if (controls === "line breaks and tabs" && (code === 0x0a || code === 0x0d || code === 0x09)) continue
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return `contains the control character ${hex(code)}`
    if ((code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)) {
      return `contains the bidirectional formatting character ${hex(code)}`
    }
    if (code === 0x2028 || code === 0x2029) return `contains the separator ${hex(code)}`
  }
  return undefined
}

const checked = (controls: Controls, annotations: Schema.Annotations.Filter<string> = {}) =>
  Schema.filter<Schema.Schema<string>>((text) => refusal(text, controls) ?? true, { jsonSchema: {}, ...annotations })

const atMost = (maxLength: number) =>
  Schema.maxLength<Schema.Schema<string>>(maxLength, { message: () => `must be at most ${maxLength} characters long` })

const notBlank = Schema.filter<Schema.Schema<string>>((text) => text.length > 0 || "must not be empty or only whitespace")

const LINE = "one line of text: no control characters, lone surrogates or bidirectional overrides; normalised to NFC " +
  "and trimmed"

export interface LineOptions {
  readonly maxLength: number
  /** Whether the empty text (or only whitespace) is accepted; by default it is refused. */
  readonly allowEmpty?: boolean
}

/**
 * One line of text, such as a name: normalised to NFC and trimmed; refuses control characters
 * (line breaks included), lone surrogates and bidirectional overrides, and, unless `allowEmpty`,
 * text that is empty or only whitespace.
 */
export const line = (options: LineOptions): Schema.Schema<string> =>
  Schema.transform(
    options.allowEmpty === true
      ? string.pipe(
        atMost(options.maxLength),
        checked("none", { description: `${LINE}, at most ${options.maxLength} characters` })
      )
      : string.pipe(
        Schema.minLength<Schema.Schema<string>>(1, { message: () => "must not be empty or only whitespace" }),
        atMost(options.maxLength),
        checked("none", { description: `${LINE}, not blank, at most ${options.maxLength} characters` })
      ),
    options.allowEmpty === true
      ? Schema.String.pipe(atMost(options.maxLength))
      : Schema.String.pipe(atMost(options.maxLength), notBlank),
    { strict: true, decode: (text) => text.normalize("NFC").trim(), encode: (text) => text }
  )

/**
 * Text of several lines, such as a description: as `line`, but line feeds and tabs are allowed
 * (CR LF and CR become LF), and the empty text is accepted.
 */
export const multiline = (options: { readonly maxLength: number }): Schema.Schema<string> =>
  Schema.transform(
    string.pipe(
      atMost(options.maxLength),
      checked("line breaks and tabs", {
        description: `text of one or more lines, at most ${options.maxLength} characters: line feeds and tabs, ` +
          "but no other control characters, lone surrogates or bidirectional overrides; normalised to NFC and trimmed"
      })
    ),
    Schema.String.pipe(atMost(options.maxLength)),
    {
      strict: true,
      decode: (text) => text.replace(/\r\n?/g, "\n").normalize("NFC").trim(),
      encode: (text) => text
    }
  )

/**
 * A search text: as `line`, and the empty text (or only whitespace, which trims to empty)
 * matches everything.
 */
export const query = (options: { readonly maxLength: number }): Schema.Schema<string> =>
  line({ maxLength: options.maxLength, allowEmpty: true })

/**
 * A code made of a fixed alphabet, such as a SKU or a currency: `pattern` is checked as sent
 * (no normalisation), and its `message` says what the code looks like.
 */
export const code = (pattern: RegExp, message: string): Schema.Schema<string> =>
  string.pipe(Schema.pattern<Schema.Schema<string>>(pattern, { message: () => message }))

/**
 * A secret as typed, such as a new password: any characters but NUL and lone surrogates, kept
 * exactly as sent (no normalisation, no trimming: it is hashed as given, and existing hashes
 * were made from the text as given). NUL is refused because a C string would end there (a
 * future hash function might hash only what precedes it); a lone surrogate because UTF-8
 * cannot encode it: it would be hashed as U+FFFD, so two different passwords would be one.
 * Its messages never quote it.
 */
export const secret = (options: { readonly minLength: number; readonly maxLength: number }): Schema.Schema<string> =>
  string.pipe(
    Schema.minLength<Schema.Schema<string>>(options.minLength, {
      message: () => `must be at least ${options.minLength} characters long`
    }),
    atMost(options.maxLength),
    checked("all but NUL", {
      description: `a secret of ${options.minLength} to ${options.maxLength} characters, any but NUL and lone surrogates; ` +
        "kept as sent, never shown back",
      jsonSchema: { format: "password" }
    })
  )

/**
 * The canonical form of an e-mail address: NFKC (so full-width and other compatibility forms
 * become the ASCII they stand for), trimmed, lower-cased. Lookups canonicalise the same way, so
 * the same address written in two forms is one account.
 */
export const canonicalEmail = (text: string) => text.normalize("NFKC").trim().toLowerCase()

// Case-insensitive: the decoded form is lower-cased, but a caller in process may pass any case
// (identity canonicalises again before it stores or looks up).
const LOCAL = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/i
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i

const emailRefusal = (email: string): string | undefined => {
  if (!/^[\x00-\x7f]*$/.test(email)) {
    return "must be written in ASCII: letters, digits and punctuation; write an international domain in its xn-- form"
  }
  const at = email.lastIndexOf("@")
  if (at <= 0 || at === email.length - 1) return "expected an e-mail address such as ana@example.com"
  const local = email.slice(0, at)
  const domain = email.slice(at + 1)
  if (local.length > 64) return "the part before @ must be at most 64 characters long"
  if (!LOCAL.test(local)) return "the part before @ may have letters, digits, dots and !#$%&'*+/=?^_`{|}~- only"
  const labels = domain.split(".")
  if (labels.length < 2 || !labels.every((label) => LABEL.test(label))) {
    return "expected a domain such as example.com after @"
  }
  return undefined
}

/**
 * An e-mail address, canonical: NFKC, trimmed, lower-cased, then ASCII only. Refusing every
 * other character is the simplest rule that leaves no look-alikes: zero-width and other
 * invisible characters, letters of another script that look Latin (Cyrillic `а`), combining
 * accents (NFD `é`) cannot be part of an address, so two addresses that look the same are the
 * same text. The local part is a dot-atom (RFC 5322, no quoted strings), the domain has at least
 * two labels of letters, digits and `-`; international domains are accepted in their punycode
 * (`xn--`) form.
 */
export const email: Schema.Schema<string> = Schema.transform(
  string.pipe(
    atMost(254),
    checked("none", {
      description: "an e-mail address in ASCII (an international domain in its xn-- form), at most 254 characters; " +
        "stored NFKC-normalised, trimmed and lower-cased",
      jsonSchema: { format: "email" }
    })
  ),
  Schema.String.pipe(
    atMost(254),
    Schema.filter<Schema.Schema<string>>((email) => emailRefusal(email) ?? true)
  ),
  { strict: true, decode: canonicalEmail, encode: (text) => text }
)

/**
 * An e-mail address as someone trying to log in types it: canonicalised as `email` is, and
 * refused when it contains what no stored text does (control characters, lone surrogates,
 * bidirectional overrides), but otherwise not judged: only a match logs in.
 */
export const emailLookup: Schema.Schema<string> = Schema.transform(
  string.pipe(
    atMost(254),
    checked("none", {
      description: "an e-mail address, at most 254 characters; compared NFKC-normalised, trimmed and lower-cased"
    })
  ),
  Schema.String,
  { strict: true, decode: canonicalEmail, encode: (text) => text }
)

/**
 * A UUID, as `Schema.UUID` (the same OpenAPI description), whose refusal never quotes the value.
 */
export const uuid: Schema.Schema<string> = Schema.UUID.annotations({
  message: () => ({ message: "expected a UUID such as 3f1c2b7e-9d5a-4c8e-b6f0-1a2b3c4d5e6f", override: true })
})

/**
 * A choice among `literals`, whose refusal lists them and never quotes the value.
 */
export const oneOf = <const L extends readonly [string, ...Array<string>]>(schema: Schema.Literal<L>): Schema.Literal<L> =>
  schema.annotations({
    message: () => ({ message: `expected one of ${schema.literals.map((l) => JSON.stringify(l)).join(", ")}`, override: true })
  })

/** At most this many characters of a value an error quotes back. */
export const MAX_QUOTE = 64

/**
 * `text` as an error may quote it: cut to `max` characters (never inside a surrogate pair) and
 * marked `…` when cut. Quote only what is not secret.
 */
export const quote = (text: string, max = MAX_QUOTE): string => {
  if (text.length <= max) return text
  const end = /[\ud800-\udbff]/.test(text.charAt(max - 1)) ? max - 1 : max
  return `${text.slice(0, end)}…`
}

/** The reason `text` is refused by every single-line field, or `undefined`: for checks outside a Schema. */
export const lineRefusal = (text: string): string | undefined => refusal(text, "none")
