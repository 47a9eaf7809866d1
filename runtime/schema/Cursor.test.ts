import { describe, expect, it } from "@effect/vitest"
import { DateTime, Option } from "effect"
import { Buffer } from "node:buffer"
import * as Cursor from "./Cursor.ts"

describe("Cursor", () => {
  const position = [DateTime.unsafeMake("2026-11-26T10:00:00.123Z"), "0b6f8f5e-3f7a-4a59-9d57-2a3f1b2c4d5e"] as const

  it("round-trips a position", () => {
    const decoded = Cursor.decode(Cursor.encode(position))
    expect(Option.map(decoded, ([at, id]) => [DateTime.formatIso(at), id])).toEqual(
      Option.some(["2026-11-26T10:00:00.123Z", position[1]])
    )
  })

  it("is opaque, URL-safe text", () => {
    expect(Cursor.encode(position)).toMatch(/^[A-Za-z0-9_-]+$/)
  })

  it.each(["", "not a cursor", "e30", Buffer.from('["yesterday","x"]').toString("base64url"), "a".repeat(500)])(
    "rejects %j",
    (text) => {
      expect(Option.isNone(Cursor.decode(text))).toBe(true)
    }
  )
})
