import { describe, expect, it } from "vitest"
import * as TrackingNumber from "./TrackingNumber.ts"

describe("tracking numbers", () => {
  it("are TS and 16 base-32 characters, and do not repeat", () => {
    const made = Array.from({ length: 10_000 }, TrackingNumber.make)
    for (const number of made) expect(number).toMatch(TrackingNumber.FORMAT)
    expect(new Set(made).size).toBe(made.length)
    // Every character of the alphabet turns up.
    const seen = new Set(made.flatMap((number) => [...number.slice(3)]))
    expect(seen.size).toBe(32)
  })
})
