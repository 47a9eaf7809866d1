/**
 * Forged paging cursors, as a family: dates at and past PostgreSQL's range, impossible dates,
 * other spellings, ids that are not UUIDs, wrong arity and types, text that is not JSON or not
 * base64url, huge and deeply nested ones. Each is refused by the cursor itself, and by the
 * gateway, in front of the catalog and its database, as a 400 validation problem naming `cursor`
 * (never a 500). The edges of the accepted range still page.
 */
import { Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Buffer } from "node:buffer"
import * as TestServer from "../../../runtime/testing/TestServer.ts"
import { CatalogModule } from "../CatalogModule.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"

const b64 = (text: string | Buffer) => Buffer.from(text).toString("base64url")
const json = (value: unknown) => b64(JSON.stringify(value))
const ID = "00000000-0000-0000-0000-000000000000"
const AT = "2026-11-26T10:00:00.123456Z"

/** Dates a cursor must not carry: past PostgreSQL's or the accepted range, impossible, or another spelling. */
const DATES = [
  "-271821-04-20T00:00:00.000000Z", // JavaScript's first instant (the reported one)
  "+275760-09-13T00:00:00.000000Z", // JavaScript's last
  "-004713-11-24T00:00:00.000000Z", // PostgreSQL's first day
  "-004714-11-23T00:00:00.000000Z", // the day before it
  "+294276-12-31T23:59:59.999999Z", // PostgreSQL's last instant
  "+294277-01-01T00:00:00.000000Z",
  "0000-12-31T23:59:59.999999Z", // just before the accepted range
  "+010000-01-01T00:00:00.000000Z", // just after it
  "10000-01-01T00:00:00.000000Z",
  "2026-02-30T00:00:00.000000Z",
  "2026-13-01T00:00:00.000000Z",
  "2026-11-26T24:00:00.000000Z",
  "2026-11-26T10:60:00.000000Z",
  "2026-11-26",
  "2026-11-26T10:00:00Z",
  "2026-11-26T10:00:00.123Z", // milliseconds only: a cursor carries microseconds
  "2026-11-26T10:00:00.1234567Z",
  "2026-11-26T10:00:00.123456+01:00",
  "2026-11-26T10:00:00.123456",
  " 2026-11-26T10:00:00.123456Z",
  "2026-11-26t10:00:00.123456z",
  "Thu, 26 Nov 2026 10:00:00 GMT",
  "1764151200000",
  "NaN",
  "",
  "\u0000"
]

/** Ids a cursor must not carry. */
const IDS = ["", "x", "00000000-0000-0000-0000-00000000000g", "00000000000000000000000000000000", `${ID} `, `{${ID}}`, "\u0000"]

/** Every forged cursor, named. */
const FORGED: ReadonlyArray<readonly [string, string]> = [
  ...DATES.map((at) => [`date ${JSON.stringify(at)}`, json([at, ID])] as const),
  ...IDS.map((id) => [`id ${JSON.stringify(id)}`, json([AT, id])] as const),
  ["no elements", json([])],
  ["one element", json([AT])],
  ["three elements", json([AT, ID, ID])],
  ["an object", json({ 0: AT, 1: ID })],
  ["a string", json(AT)],
  ["a number", json(0)],
  ["null", json(null)],
  ["a number for the date", json([0, ID])],
  ["null for the date", json([null, ID])],
  ["a number for the id", json([AT, 1])],
  ["an array for the id", json([AT, [ID]])],
  ["an object for the date", json([{ at: AT }, ID])],
  ["another spelling of a valid position", b64(`[ "${AT}" , "${ID}" ]`)],
  ["not JSON", b64(`[${AT},${ID}]`)],
  ["truncated JSON", json([AT, ID]).slice(0, 40)],
  ["JSON with a NUL", b64(`["${AT}\u0000","${ID}"]`)],
  ["bytes that are not UTF-8", b64(Buffer.from([0xff, 0xfe, 0xfd, 0x5b, 0x5d]))],
  ["nested arrays", b64("[".repeat(60) + "]".repeat(60))],
  ["nested in the date", json([[[[[[AT]]]]], ID])],
  ["empty", ""],
  ["base64 with padding", `${json([AT, ID])}==`],
  ["base64 with + and /", "+/+/+/+/"],
  ["spaces", "a b c"],
  ["a dot", "abc.def"],
  ["a NUL", "\u0000"],
  ["non-ASCII", "ёжик"],
  ["a percent sign", "%41%42"],
  ["the longest a query allows", "A".repeat(200)]
]

/** Too long for the contract: refused by the gateway's query schema, before the catalog. */
const TOO_LONG: ReadonlyArray<readonly [string, string]> = [
  ["huge", "A".repeat(10_000)],
  ["deeply nested", b64("[".repeat(5_000) + "]".repeat(5_000))],
  ["a valid position followed by junk", json([AT, ID]) + "A".repeat(200)]
]

/** Positions at the edges of the accepted range: still cursors. */
const EDGES = ["0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z", "1970-01-01T00:00:00.000000Z", "2024-02-29T23:59:59.000001Z"].map((at) =>
  [at, json([at, ID])] as const
)

describe("a forged cursor", () => {
  it.each([...FORGED, ...TOO_LONG])("is not a cursor: %s", (_, cursor) => {
    expect(Option.isNone(Cursor.decode(cursor))).toBe(true)
  })

  it.each(EDGES)("at the edge of the range, is one: %s", (_, cursor) => {
    expect(Option.isSome(Cursor.decode(cursor))).toBe(true)
  })
})

describe("forged cursors at the gateway", () => {
  let server: TestServer.TestServer | undefined

  beforeAll(async () => {
    server = await TestServer.startOnTestDatabase([CatalogModule])
  })
  afterAll(() => server?.close())

  const get = (cursor: string) =>
    fetch(`${server!.url}/v1/products?${new URLSearchParams({ cursor })}`)

  it("answers each with a 400 validation problem naming cursor", async () => {
    for (const [name, cursor] of [...FORGED, ...TOO_LONG]) {
      const response = await get(cursor)
      const body = await response.json() as { type: string; status: number; errors: Array<{ field: string; pointer: string }> }
      expect([response.status, response.headers.get("content-type")], name).toEqual([400, "application/problem+json"])
      expect(body, name).toMatchObject({ type: "/problems/validation", status: 400 })
      expect(body.errors.map((e) => [e.field, e.pointer]), name).toEqual([["cursor", "/cursor"]])
    }
  })

  it("quotes none of a cursor the contract allows back", async () => {
    for (const [name, cursor] of FORGED) {
      const body = await (await get(cursor)).text()
      if (cursor.length > 16) expect(body, name).not.toContain(cursor.slice(0, 16))
    }
  })

  it("pages from the edges of the accepted range", async () => {
    for (const [name, cursor] of EDGES) expect((await get(cursor)).status, name).toBe(200)
  })
})
