import { describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import { Buffer } from "node:buffer"
import * as Cursor from "./Cursor.ts"

describe("Cursor", () => {
  const position = ["2026-11-26T10:00:00.123456Z", "0b6f8f5e-3f7a-4a59-9d57-2a3f1b2c4d5e"] as const

  it("round-trips a position, to the microsecond", () => {
    expect(Cursor.decode(Cursor.encode(position))).toEqual(Option.some(position))
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

  it("pages rows fetched one past the limit: the items, and a cursor at the last only when more follow", () => {
    const rows = ["a", "b", "c"].map((item, i) => ({ item, position: [`2026-11-26T10:00:00.00000${i}Z`, position[1]] as const }))
    const more = Cursor.page(rows, 2)
    expect(more.items).toEqual(["a", "b"])
    expect(Cursor.decode(more.nextCursor!)).toEqual(Option.some(rows[1]!.position))
    expect(Cursor.page(rows, 3)).toEqual({ items: ["a", "b", "c"], nextCursor: null })
  })
})
