/**
 * The paging cursor of order and saga listings: the (createdAt, id) of the last row of a page,
 * opaque to clients (base64url of a small JSON array), accepted only in exactly the form
 * `encode` writes (as catalog's cursor: a position, not an authority; the query still filters
 * by the caller).
 */
import { DateTime, Either, Option, Schema } from "effect"
import { Buffer } from "node:buffer"

const EARLIEST = Date.parse("0001-01-01T00:00:00.000Z")
const LATEST = Date.parse("9999-12-31T23:59:59.999Z")

const At = Schema.DateTimeUtc.pipe(
  Schema.filter((at) => {
    const millis = DateTime.toEpochMillis(at)
    return millis >= EARLIEST && millis <= LATEST
  })
)

const Position = Schema.parseJson(Schema.Tuple(At, Schema.UUID))
export type Position = typeof Position.Type

const encodePosition = Schema.encodeSync(Position)
const encodeEither = Schema.encodeEither(Position)
const decodePosition = Schema.decodeUnknownEither(Position)

const MAX_LENGTH = 120

export const encode = (position: Position): string => Buffer.from(encodePosition(position), "utf8").toString("base64url")

/** `None` when the text is not a cursor this module made. */
export const decode = (cursor: string): Option.Option<Position> => {
  if (cursor.length > MAX_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) return Option.none()
  const position = Either.getRight(decodePosition(Buffer.from(cursor, "base64url").toString("utf8")))
  return Option.filter(position, (p) =>
    Either.match(encodeEither(p), {
      onLeft: () => false,
      onRight: (json) => Buffer.from(json, "utf8").toString("base64url") === cursor
    }))
}
