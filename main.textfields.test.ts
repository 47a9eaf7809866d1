/**
 * Every text field of every route, enumerated from the served /openapi.json (query, path and
 * body), sent what no text field may accept: NUL and other control characters, a lone
 * surrogate, a bidirectional override, text that is only whitespace, an over-long value, a
 * huge array, a deep value. Every answer is a small 4xx problem that names the field and quotes
 * nothing back; never a 500. Then the identity rules: look-alike e-mail addresses are one
 * account or refused, and NFC and NFD spellings log into one account. Every answer is checked
 * against the served document too (`OpenApiConformance`): a refusal it does not describe fails.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import * as crypto from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const ADMIN = { email: "admin@textfields.test", password: "admin-password-textfields" }
/** Larger than any problem the gateway should answer to one bad field. */
const MAX_PROBLEM_BYTES = 4096
/** Sent inside every hostile value: no answer may contain it. */
const MARK = "Zq7Mark"

const checkedFetch = OpenApiConformance.checkedFetch()

interface Field {
  readonly route: string
  readonly method: string
  readonly path: string
  readonly in: "query" | "path" | "body"
  readonly name: string
  /** A secret (`format: password`): never quoted, and any character but NUL may be allowed. */
  readonly secret: boolean
  readonly text: boolean
  /** An object of named fields itself (a shipping address): an object sent there is judged by its fields. */
  readonly object?: boolean
}

/** A hostile value: what it is, its JSON form, and how it is written in a URL. */
interface Hostile {
  readonly what: string
  readonly value: unknown
  /** The value as JSON text, when not `JSON.stringify(value)`. */
  readonly json?: string
  readonly url?: string
  /** Every text field refuses it, secrets too. */
  readonly refusedBySecrets: boolean
}

const text = (what: string, value: string, refusedBySecrets = false): Hostile => ({
  what,
  value,
  url: encodeURIComponent(value),
  refusedBySecrets
})

/** JSON nested 5,000 deep, written out (JSON.stringify itself would overflow the stack). */
const deep = `${"[".repeat(5_000)}"${MARK}"${"]".repeat(5_000)}`

const filler = "a".repeat(100)

/** Values every text field refuses with a 400 naming it. */
const refused: ReadonlyArray<Hostile> = [
  text("NUL", `${MARK}\u0000x`, true),
  text("a C0 control", `${MARK}\u0007x`),
  text("an escape sequence", `${MARK}\u001b[31mx`),
  text("a C1 control", `${MARK}\u0085x`),
  // JSON carries a lone surrogate escaped; a URL cannot carry one (see `odd`).
  { what: "a lone surrogate", value: `${MARK}\ud800x`, refusedBySecrets: true },
  text("a right-to-left override", `${MARK}\u202ex`),
  // MARK after the first 64 characters, which a problem may quote (a 404 quotes its path).
  text("an over-long value", `${"a".repeat(10_000)}${MARK}`, true)
]

/**
 * Values a field may accept (a search matches everything on a blank; a URL cannot carry a lone
 * surrogate or invalid UTF-8, which arrive as the literal text), but never with a 500, and
 * quoted, if at all, only up to 64 characters: MARK comes after that.
 */
const odd: ReadonlyArray<Hostile> = [
  text("only whitespace", " \t\u3000 "),
  text("a long value", `${filler}${MARK}`),
  { what: "invalid UTF-8 in a URL", value: "", url: `${filler}${MARK}%FFx`, refusedBySecrets: false },
  { what: "a lone surrogate in a URL", value: "", url: `${filler}${MARK}%ED%A0%80x`, refusedBySecrets: false }
]

/** JSON values no body field accepts. */
const structured: ReadonlyArray<Hostile> = [
  { what: "a huge array", value: Array.from({ length: 40_000 }, () => MARK), refusedBySecrets: true },
  { what: "a deep value", value: undefined, json: deep, refusedBySecrets: true },
  { what: "an object", value: { [MARK]: MARK }, refusedBySecrets: true }
]

const postgres = await Services.findPostgres()

describe.skipIf(!postgres.ok)("every text field of every route", () => {
  let server: Processes.Server
  let drop: () => Promise<void>
  let databaseUrl: string
  let token: string
  let fields: ReadonlyArray<Field>

  const send = async (method: string, path: string, body?: string, contentType = "application/json") => {
    const response = await checkedFetch(`${server.url}${path}`, {
      method: method.toUpperCase(),
      headers: {
        authorization: `Bearer ${token}`,
        // A valid key, so that a route that requires one (POST /v1/orders) reaches its body's Schema.
        "idempotency-key": crypto.randomUUID(),
        ...(body === undefined ? {} : { "content-type": contentType })
      },
      ...(body === undefined ? {} : { body })
    })
    const raw = await response.text()
    return { status: response.status, contentType: response.headers.get("content-type"), raw }
  }

  /** The request that puts `value` (or `url`, in a URL) into `field` alone. */
  const request = (field: Field, hostile: Hostile) => {
    const url = hostile.url ?? ""
    if (field.in === "query") return send(field.method, `${field.path}?${field.name}=${url}`)
    const path = field.path.replace(/\{(\w+)\}/g, (_, name) => name === field.name ? url : crypto.randomUUID())
    if (field.in === "path") return send(field.method, path)
    return send(field.method, path, `{${JSON.stringify(field.name)}:${hostile.json ?? JSON.stringify(hostile.value)}}`)
  }

  /** A problem: 4xx, problem+json, small, quoting nothing that was sent. */
  const expectProblem = (answer: { status: number; contentType: string | null; raw: string }, context: string) => {
    expect(answer.status, `${context}: ${answer.raw.slice(0, 300)}`).toBeGreaterThanOrEqual(400)
    expect(answer.status, context).toBeLessThan(500)
    expect(answer.contentType, context).toContain("application/problem+json")
    expect(Buffer.byteLength(answer.raw), context).toBeLessThan(MAX_PROBLEM_BYTES)
    expect(answer.raw, context).not.toContain(MARK)
    return JSON.parse(answer.raw) as { type: string; status: number; errors?: ReadonlyArray<{ field: string; message: string }> }
  }

  beforeAll(async () => {
    const db = await Services.createDatabase((postgres as { value: string }).value)
    drop = db.drop
    databaseUrl = db.url
    server = Processes.spawnServer(await Processes.freePort(), {
      DATABASE_URL: db.url,
      TESSERA_MODULES: "all",
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_PASSWORD_HASH_COST: "10",
      TESSERA_RATE_LIMIT: "0",
      // The edge refuses deep bodies whole (main.edge.test.ts); lifted here, so that a deep value
      // reaches each field's Schema and its formatting is what is tested.
      TESSERA_MAX_JSON_DEPTH: "100000"
    })
    await Processes.waitReady(server)
    const login = await fetch(`${server.url}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(ADMIN)
    })
    token = ((await login.json()) as { accessToken: string }).accessToken
    const spec = (await (await fetch(`${server.url}/openapi.json`)).json()) as any
    const resolve = (schema: any): any => schema?.$ref ? resolve(spec.components.schemas[schema.$ref.split("/").pop()]) : schema
    const found: Array<Field> = []
    for (const [path, operations] of Object.entries<any>(spec.paths)) {
      for (const [method, operation] of Object.entries<any>(operations)) {
        const route = `${method.toUpperCase()} ${path}`
        for (const parameter of operation.parameters ?? []) {
          if (parameter.in !== "query" && parameter.in !== "path") continue
          const schema = resolve(parameter.schema)
          const { in: place, name } = parameter
          found.push({ route, method, path, in: place, name, secret: schema?.format === "password", text: schema?.type === "string" })
        }
        const body = resolve(operation.requestBody?.content?.["application/json"]?.schema)
        for (const [name, property] of Object.entries<any>(body?.properties ?? {})) {
          const schema = resolve(property)
          found.push({
            route,
            method,
            path,
            in: "body",
            name,
            secret: schema?.format === "password",
            text: schema?.type === "string",
            object: schema?.type === "object"
          })
        }
      }
    }
    fields = found
  }, 120_000)

  afterAll(async () => {
    await server?.stop()
    await drop?.()
  })

  it("finds the text fields of every route, secrets marked", () => {
    const names = fields.filter((f) => f.text).map((f) => `${f.route} ${f.in} ${f.name}${f.secret ? " (secret)" : ""}`)
    // A floor, not the list: a new route's fields join the sweep without being named here.
    expect(names).toEqual(expect.arrayContaining([
      "GET /v1/products query q",
      "GET /v1/products/{id} path id",
      "POST /v1/auth/register body email",
      "POST /v1/auth/register body password (secret)",
      "POST /v1/auth/login body password (secret)",
      "POST /v1/products body description",
      "POST /v1/api-keys body name"
    ]))
  })

  it("refuses control characters, lone surrogates, bidi overrides and over-long text in every text field, naming it", async () => {
    for (const field of fields.filter((f) => f.text)) {
      for (const hostile of refused) {
        if (hostile.url === undefined && field.in !== "body") continue
        // A login tries any password (one set before the rules may have any character): only a match logs in.
        const refusedHere = (!field.secret || (hostile.refusedBySecrets && field.route !== "POST /v1/auth/login")) &&
          // The router matches no route to a path segment this long (404) before any Schema runs.
          !(field.in === "path" && hostile.what === "an over-long value")
        const context = `${field.route} ${field.in} ${field.name} <- ${hostile.what}`
        const problem = expectProblem(await request(field, hostile), context)
        if (!refusedHere) continue
        expect(problem.status, context).toBe(400)
        expect(problem.errors?.map((e) => e.field), context).toContain(field.name)
      }
    }
  }, 120_000)

  it("answers whitespace-only and undecodable text in every field without a 500", async () => {
    for (const field of fields.filter((f) => f.text && f.in !== "body")) {
      for (const hostile of odd) {
        const answer = await request(field, hostile)
        const context = `${field.route} ${field.in} ${field.name} <- ${hostile.what}: ${answer.raw.slice(0, 300)}`
        expect(answer.status, context).toBeLessThan(500)
        expect(answer.raw, context).not.toContain(MARK)
      }
    }
    for (const field of fields.filter((f) => f.text && f.in === "body" && !f.secret)) {
      if (field.name === "description") continue // a description may be empty
      const problem = expectProblem(await request(field, odd[0]!), `${field.route} ${field.name} <- only whitespace`)
      expect(problem.errors?.map((e) => e.field)).toContain(field.name)
    }
  }, 120_000)

  it("refuses a huge array, a deep value or an object in every body field, naming it", async () => {
    for (const field of fields.filter((f) => f.in === "body")) {
      for (const hostile of structured) {
        // An object field refuses an object without its fields by naming each missing one.
        if (field.object && hostile.what === "an object") continue
        const context = `${field.route} ${field.name} <- ${hostile.what}`
        const problem = expectProblem(await request(field, hostile), context)
        expect(problem.status, context).toBe(400)
        expect(problem.errors?.find((e) => e.field === field.name)?.message, context).toMatch(/^expected /)
      }
    }
  }, 120_000)

  it("refuses a repeated query parameter as one that is not text", async () => {
    for (const field of fields.filter((f) => f.text && f.in === "query")) {
      const repeated = Array.from({ length: 200 }, () => `${field.name}=${MARK}`).join("&")
      const problem = expectProblem(await send(field.method, `${field.path}?${repeated}`), `${field.route} ${field.name} repeated`)
      expect(problem.errors?.map((e) => e.field)).toContain(field.name)
    }
  }, 60_000)

  it("answers a body that is not a JSON object, whole, with a small problem that never quotes it", async () => {
    const writes = [...new Set(fields.filter((f) => f.in === "body").map((f) => `${f.method} ${f.path}`))]
    expect(writes.length).toBeGreaterThan(3)
    const bodies: ReadonlyArray<readonly [string, string, string]> = [
      ["a password as text/plain", `${MARK}-password`, "text/plain"],
      ["a string", JSON.stringify(`${MARK}-password`), "application/json"],
      ["a 0.8 MB array", JSON.stringify(Array.from({ length: 100_000 }, () => MARK)), "application/json"],
      ["a deep array", deep, "application/json"],
      ["JSON that does not parse", `{"password":"${MARK}"`, "application/json"]
    ]
    for (const write of writes) {
      const [method, template] = write.split(" ") as [string, string]
      const path = template.replace(/\{\w+\}/g, () => crypto.randomUUID())
      for (const [what, body, contentType] of bodies) {
        const problem = expectProblem(await send(method, path, body, contentType), `${write} <- ${what}`)
        if (problem.status === 400) expect(problem.errors, `${write} <- ${what}`).toHaveLength(1)
      }
    }
  }, 120_000)

  describe("identity", () => {
    const register = (email: string, name = "Ana") =>
      send("post", "/v1/auth/register", JSON.stringify({ email, password: "a good password", name }))
    const login = (email: string) => send("post", "/v1/auth/login", JSON.stringify({ email, password: "a good password" }))
    const unique = () => Math.random().toString(36).slice(2, 10)

    it("makes look-alike e-mail addresses one account, or refuses them", async () => {
      const local = `ana.${unique()}`
      expect((await register(`${local}@example.com`)).status).toBe(201)
      // Full-width letters and another case are the same address: NFKC, lower-cased.
      const fullWidth = [...local].map((c) => /[a-z]/.test(c) ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c).join("")
      for (const same of [`${local.toUpperCase()}@EXAMPLE.COM`, `${fullWidth}@example.com`, ` ${local}@example.com `]) {
        const answer = await register(same)
        expect(answer.status, same).toBe(409)
        expect((await login(same)).status, same).toBe(200)
      }
      // Invisible and foreign-script look-alikes are refused, naming the field.
      const lookAlikes = [
        `${local}\u200b@example.com`, // a zero-width space
        `${local.replace("a", "\u0430")}@example.com`, // a Cyrillic а
        `${local}@ex\u0430mple.com`,
        `${local}\u00e9@example.com`, // é, NFC
        `${local}e\u0301@example.com` // é, NFD
      ]
      for (const lookAlike of lookAlikes) {
        const problem = expectProblem(await register(lookAlike), lookAlike)
        expect(problem.errors?.map((e) => e.field), lookAlike).toEqual(["email"])
      }
    }, 60_000)

    it("refuses names that are blank, reorder text, or carry controls or lone surrogates", async () => {
      for (const name of ["   ", "\u202eevil", "a\u0000b", "a\u0007b", "a\ud800b", "line\nbreak"]) {
        const problem = expectProblem(await register(`n.${unique()}@example.com`, name), JSON.stringify(name))
        expect(problem.errors?.map((e) => e.field)).toEqual(["name"])
      }
      const created = await register(`n.${unique()}@example.com`, "  Jose\u0301 Mu\u0308ller ")
      expect(created.status).toBe(201)
      expect(JSON.parse(created.raw).name).toBe("Jos\u00e9 M\u00fcller")
    }, 60_000)

    it("logs an existing account with an accented address in by its NFC and its NFD spelling alike", async () => {
      // Registered before the rules (written here straight into the table), as existing data is.
      const placeholder = `placeholder.${unique()}@example.com`
      expect((await register(placeholder)).status).toBe(201)
      const nfc = `jos\u00e9.${unique()}@example.com`
      await Effect.runPromise(Effect.scoped(
        Effect.flatMap(
          PgClient.make({ url: Redacted.make(databaseUrl), maxConnections: 1 }),
          (sql) => sql`UPDATE identity.users SET email = ${nfc} WHERE email = ${placeholder}`
        ).pipe(Effect.provide(Reactivity.layer))
      ))
      expect((await login(nfc)).status).toBe(200)
      expect((await login(nfc.normalize("NFD"))).status).toBe(200)
      expect((await login(nfc.toUpperCase().normalize("NFD"))).status).toBe(200)
    }, 60_000)
  })
})
