/** Pure rules for the lines of a reservation. */
import { Either } from "effect"
import { MAX_UNITS, type ReservationLine } from "../InventoryApi.ts"

/**
 * One line per product, in product id order (the order rows are locked in, so two reservations
 * never wait on each other's locks). Fails with the product whose summed quantity is too large.
 */
export const normalize = (
  lines: ReadonlyArray<ReservationLine>
): Either.Either<ReadonlyArray<ReservationLine>, ReservationLine> => {
  const byProduct = new Map<string, ReservationLine>()
  for (const line of lines) {
    const seen = byProduct.get(line.productId)
    byProduct.set(line.productId, seen ? { productId: line.productId, quantity: seen.quantity + line.quantity } : line)
  }
  const merged = [...byProduct.values()].sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0))
  const tooLarge = merged.find((line) => line.quantity > MAX_UNITS)
  return tooLarge ? Either.left(tooLarge) : Either.right(merged)
}

/** Whether two normalized line lists ask for the same units. */
export const same = (a: ReadonlyArray<ReservationLine>, b: ReadonlyArray<ReservationLine>): boolean =>
  a.length === b.length && a.every((line, i) => line.productId === b[i]!.productId && line.quantity === b[i]!.quantity)
