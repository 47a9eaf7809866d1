/**
 * The paging cursor of a listing in creation order (catalog's product searches, orders' order
 * lists): the (createdAt, id) of the last row of a page, opaque to clients (base64url of a small
 * JSON array).
 *
 * Checked in full rather than signed: a cursor is a position in a public ordering, not an
 * authority, so a forged one can only ask for a page anyone may read; what matters is that the
 * database never sees a value it cannot hold. Checking needs no key, so a cursor works across
 * every process of the module, embedded or not, and across restarts. A cursor is accepted only in
 * exactly the form `encode` writes it, with a date in years 1-9999 (inside PostgreSQL's
 * timestamptz range, and every date a module stores) and a UUID.
 */
import { DateTime, Either, Option, Schema } from "effect"
import { Buffer } from "node:buffer"

/** The first and last instants a cursor may name. */
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

/** Longer than any cursor `encode` writes. */
const MAX_LENGTH = 120

export const encode = (position: Position): string =>
  Buffer.from(encodePosition(position), "utf8").toString("base64url")

/** `None` when the text is not a cursor this module made. */
export const decode = (cursor: string): Option.Option<Position> => {
  if (cursor.length > MAX_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) return Option.none()
  const position = Either.getRight(decodePosition(Buffer.from(cursor, "base64url").toString("utf8")))
  // Only the very text `encode` writes: no other spelling of the same date, id or array.
  return Option.filter(position, (p) =>
    Either.match(encodeEither(p), {
      onLeft: () => false,
      onRight: (json) => Buffer.from(json, "utf8").toString("base64url") === cursor
    }))
}
