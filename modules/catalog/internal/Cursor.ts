/**
 * The paging cursor of product searches: the (createdAt, id) of the last product of a page,
 * opaque to clients (base64url of a small JSON array).
 */
import { Either, Option, Schema } from "effect"

const Position = Schema.parseJson(Schema.Tuple(Schema.DateTimeUtc, Schema.UUID))
export type Position = typeof Position.Type

const encodePosition = Schema.encodeSync(Position)
const decodePosition = Schema.decodeUnknownEither(Position)

export const encode = (position: Position): string =>
  Buffer.from(encodePosition(position), "utf8").toString("base64url")

/** `None` when the text is not a cursor this module made. */
export const decode = (cursor: string): Option.Option<Position> =>
  /^[A-Za-z0-9_-]+$/.test(cursor)
    ? Either.getRight(decodePosition(Buffer.from(cursor, "base64url").toString("utf8")))
    : Option.none()
