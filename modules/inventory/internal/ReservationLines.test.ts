import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import type { ProductId } from "../../catalog/index.ts"
import { MAX_UNITS } from "../InventoryApi.ts"
import * as ReservationLines from "./ReservationLines.ts"

const a = "00000000-0000-4000-8000-00000000000a" as ProductId
const b = "00000000-0000-4000-8000-00000000000b" as ProductId

describe("ReservationLines.normalize", () => {
  it("merges lines of one product and sorts by product id", () => {
    expect(ReservationLines.normalize([{ productId: b, quantity: 1 }, { productId: a, quantity: 2 }, { productId: b, quantity: 3 }]))
      .toEqual(Either.right([{ productId: a, quantity: 2 }, { productId: b, quantity: 4 }]))
  })

  it("refuses a product whose merged quantity exceeds the limit", () => {
    expect(ReservationLines.normalize([{ productId: a, quantity: MAX_UNITS }, { productId: a, quantity: 1 }]))
      .toEqual(Either.left({ productId: a, quantity: MAX_UNITS + 1 }))
  })
})

describe("ReservationLines.same", () => {
  it("compares products and quantities in order", () => {
    const lines = [{ productId: a, quantity: 2 }, { productId: b, quantity: 4 }]
    expect(ReservationLines.same(lines, [...lines])).toBe(true)
    expect(ReservationLines.same(lines, [{ productId: a, quantity: 2 }, { productId: b, quantity: 5 }])).toBe(false)
    expect(ReservationLines.same(lines, lines.slice(0, 1))).toBe(false)
  })
})
