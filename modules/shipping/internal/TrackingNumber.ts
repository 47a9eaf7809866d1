/** Tracking numbers: `TS` and 16 characters of Crockford's base 32 (80 random bits). */
import * as crypto from "node:crypto"

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

/** What a tracking number looks like. */
export const FORMAT = /^TS[0-9A-HJKMNP-TV-Z]{16}$/

/** A new tracking number; two are the same with odds of one in 2^80 (the database refuses a repeat). */
export const make = (): string => {
  const bytes = crypto.randomBytes(10)
  let bits = 0n
  for (const byte of bytes) bits = (bits << 8n) | BigInt(byte)
  let text = ""
  for (let i = 0; i < 16; i++) {
    text = ALPHABET[Number(bits & 31n)] + text
    bits >>= 5n
  }
  return `TS${text}`
}
