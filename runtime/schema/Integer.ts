/**
 * Integers the contracts accept from outside: a JSON number that is an integer within bounds.
 * Any other value (a string, an array however deep) is refused with a message that does not
 * quote it, as every Schema in runtime/schema is.
 */
import { ParseResult, Schema } from "effect"
import * as Text from "./Text.ts"

/** A JSON integer from `min` to `max`, both included. */
export const between = (min: number, max: number): Schema.Schema<number> =>
  Schema.Number.annotations({ message: () => "expected a number" }).pipe(
    Schema.int({ message: () => "expected an integer" }),
    Schema.between(min, max, { message: () => `must be from ${min} to ${max}` })
  )

/**
 * An integer from `min` to `max` written as text, as in a query parameter (`?limit=20`):
 * decimal digits with an optional `-`.
 */
export const fromText = (min: number, max: number): Schema.Schema<number, string> =>
  Schema.transformOrFail(Text.string, between(min, max), {
    strict: true,
    decode: (text, _, ast) =>
      /^-?[0-9]{1,16}$/.test(text)
        ? ParseResult.succeed(Number(text))
        : ParseResult.fail(new ParseResult.Type(ast, text, "expected an integer written in decimal digits")),
    encode: (n) => ParseResult.succeed(String(n))
  })

/**
 * A page size in a query parameter (`?limit=20`): 1 to 100 in decimal digits, described in
 * OpenAPI as the integer it spells.
 */
export const pageSize: Schema.Schema<number, string> = Schema.compose(
  Schema.String.pipe(Schema.pattern(/^[0-9]{1,3}$/, { message: () => "expected an integer from 1 to 100" })),
  Schema.NumberFromString
).pipe(
  Schema.int(),
  Schema.between(1, 100),
  Schema.annotations({ jsonSchema: { type: "integer", minimum: 1, maximum: 100 } })
)
