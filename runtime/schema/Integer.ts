/**
 * Integers the contracts accept from outside: a JSON number that is an integer within bounds.
 * Any other value (a string, an array however deep) is refused with a message that does not
 * quote it, as every Schema in runtime/schema is.
 */
import { Schema } from "effect"

/** A JSON integer from `min` to `max`, both included. */
export const between = (min: number, max: number): Schema.Schema<number> =>
  Schema.Number.annotations({ message: () => "expected a number" }).pipe(
    Schema.int({ message: () => "expected an integer" }),
    Schema.between(min, max, { message: () => `must be from ${min} to ${max}` })
  )
