/**
 * The paging cursor of a listing in creation order (catalog's product searches, orders' and
 * notifications' lists): the (createdAt, id) of the last row of a page, opaque to clients
 * (base64url of a small JSON array).
 *
 * The instant is carried to the microsecond, as PostgreSQL stores a timestamptz, and as text
 * rather than a JavaScript Date: a Date holds milliseconds, so a cursor made from one falls
 * between rows written in the same millisecond, and the next page (`created_at < cursor`) lost
 * those just older than the last row shown. Repositories select the instant with `AT_FORMAT`
 * (see `atColumn`) and compare with `$at::timestamptz`.
 *
 * Checked in full rather than signed: a cursor is a position in a public ordering, not an
 * authority, so a forged one can only ask for a page anyone may read; what matters is that the
 * database never sees a value it cannot hold. Checking needs no key, so a cursor works across
 * every process of the module, embedded or not, and across restarts. A cursor is accepted only in
 * exactly the form `encode` writes it, with a real date in years 1-9999 (inside PostgreSQL's
 * timestamptz range, and every date a module stores) and a UUID.
 */
import { Either, Option, Schema } from "effect"
import { Buffer } from "node:buffer"

/** `to_char` format of a cursor's instant, given the instant in UTC: `2026-11-26T10:00:00.123456Z`. */
export const AT_FORMAT = `YYYY-MM-DD"T"HH24:MI:SS.US"Z"`

/** The SQL expression (for `sql.literal`) that gives a timestamptz column's instant as a cursor holds it. */
export const atColumn = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', '${AT_FORMAT}')`

const AT_TEXT = /^(\d{4})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/

/** A real instant in years 1-9999, spelled as `AT_FORMAT` writes it. */
const At = Schema.String.pipe(
  Schema.filter((at) => {
    const match = AT_TEXT.exec(at)
    if (match === null || match[1] === "0000") return false
    // The calendar check: JavaScript reads the same date and time back to the millisecond
    // (it rolls 30 February over to March, and refuses hour 24 only in some spellings).
    const millis = Date.parse(at)
    return Number.isFinite(millis) && new Date(millis).toISOString().slice(0, 23) === at.slice(0, 23)
  })
)

const Position = Schema.parseJson(Schema.Tuple(At, Schema.UUID))
/** Where a page ended: the last row's instant (`AT_FORMAT`) and id. */
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

/** A listed row with its place in the listing's order. */
export interface Placed<A> {
  readonly item: A
  readonly position: Position
}

/**
 * A page of at most `limit` items from `rows`, fetched with one more than `limit` (that one
 * tells whether another page follows), and the cursor that asks for the next.
 */
export const page = <A>(rows: ReadonlyArray<Placed<A>>, limit: number) => {
  const last = rows[limit - 1]
  return {
    items: rows.slice(0, limit).map((row) => row.item),
    nextCursor: rows.length > limit && last !== undefined ? encode(last.position) : null
  }
}
