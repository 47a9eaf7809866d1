/**
 * The OpenAPI document is the contract with every client: it must pass the standard tools
 * (swagger-parser, Spectral's `spectral:oas`, openapi-typescript), give a strict typed client
 * what it needs without casts, and agree with the server on what each operation accepts and
 * answers. Built in process from the same HttpApi the gateway serves (main.test.ts checks that
 * the served document is this one, and every answer against it).
 */
import SwaggerParser from "@apidevtools/swagger-parser"
import { HttpApi, HttpApiEndpoint, OpenApi } from "@effect/platform"
import { Document, Spectral } from "@stoplight/spectral-core"
import * as Parsers from "@stoplight/spectral-parsers"
import { oas } from "@stoplight/spectral-rulesets"
import { Ajv2020 } from "ajv/dist/2020.js"
import { Either, ParseResult, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import openapiTS, { astToString } from "openapi-typescript"
import ts from "typescript"
import { describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Gateway from "./Gateway.ts"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const api = Gateway.api(modules.filter((m) => m.http !== undefined))
/** A fresh copy each time: the tools below resolve references in place. */
const document = (): any => structuredClone(OpenApi.fromApi(api))

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]
const operations = () =>
  Object.entries<any>(document().paths).flatMap(([route, item]) =>
    Object.entries<any>(item).filter(([method]) => METHODS.includes(method)).map(([method, operation]) => ({ route, method, operation }))
  )

/** Every `$ref` in `node`. */
const refs = (node: unknown): Array<string> => {
  if (Array.isArray(node)) return node.flatMap(refs)
  if (node === null || typeof node !== "object") return []
  return Object.entries(node).flatMap(([key, value]) => key === "$ref" && typeof value === "string" ? [value] : refs(value))
}

describe("the OpenAPI document", () => {
  it("is valid OpenAPI 3.1 for swagger-parser", async () => {
    await expect(SwaggerParser.validate(document())).resolves.toBeDefined()
  })

  it("has no errors under Spectral's spectral:oas", async () => {
    const spectral = new Spectral()
    spectral.setRuleset(oas as any)
    const results = await spectral.run(new Document(JSON.stringify(document(), null, 2), Parsers.Json))
    const described = results.map((r) => `${["error", "warning", "info", "hint"][r.severity]} ${r.code} ${r.path.join(".")}: ${r.message}`)
    // What a request that matches no operation gets cannot be said per operation: the document
    // keeps it in components.responses, which nothing references.
    const accepted = [
      "warning oas3-unused-component components.responses.RouteNotFound: Potentially unused component has been detected.",
      "warning oas3-unused-component components.responses.MethodNotAllowed: Potentially unused component has been detected."
    ]
    expect(described.filter((line) => line.startsWith("error") || line.startsWith("warning"))).toEqual(accepted)
  }, 30_000)

  it("names every component as OpenAPI allows, and every reference has its target", () => {
    const spec = document()
    for (const kind of Object.keys(spec.components)) {
      for (const name of Object.keys(spec.components[kind])) expect(name).toMatch(/^[a-zA-Z0-9._-]+$/)
    }
    for (const ref of refs(spec)) {
      const [kind, name, ...rest] = ref.replace(/^#\/components\//, "").split("/")
      expect(rest, ref).toEqual([])
      expect(spec.components[kind!]?.[name!], ref).toBeDefined()
    }
  })

  it("describes every answer an operation may give, each problem narrowable by its type", () => {
    const spec = document()
    const resolve = (schema: any): any => schema.$ref ? resolve(spec.components.schemas[schema.$ref.split("/").pop()]) : schema
    const flat = (schema: any): Array<any> => schema.anyOf ? schema.anyOf.flatMap(flat) : [schema]
    for (const { route, method, operation } of operations()) {
      const where = `${method.toUpperCase()} ${route}`
      const statuses = Object.keys(operation.responses)
      const always = ["400", "401", "408", "429", "431", "500", "502", "503", "504"]
      expect(statuses, where).toEqual(expect.arrayContaining(always))
      // Any request may carry a body: the edge refuses one too large (413) or not JSON (415).
      expect(statuses.includes("413") && statuses.includes("415"), where).toBe(true)
      for (const [status, response] of Object.entries<any>(operation.responses)) {
        if (Number(status) < 400) continue
        expect(Object.keys(response.content), `${where} ${status}`).toEqual(["application/problem+json"])
        const members = flat(response.content["application/problem+json"].schema).map(resolve)
        const types = members.map((member) => {
          expect(member.required, `${where} ${status}`).toEqual(expect.arrayContaining(["type", "title", "status", "detail"]))
          expect(member.properties.status.enum, `${where} ${status}`).toEqual([Number(status)])
          const type = member.properties.type
          expect(type.enum ?? [type.const], `${where} ${status}`).toHaveLength(1)
          return type.const ?? type.enum[0]
        })
        // One member per type: a client narrows by `type` alone.
        expect(new Set(types).size, `${where} ${status}`).toBe(types.length)
        if (status === "400") {
          for (const member of members) expect(member.required, `${where} 400`).toContain("errors")
        }
        if (status === "429" || status === "503") expect(response.headers?.["Retry-After"]?.required, `${where} ${status}`).toBe(true)
      }
    }
    expect(spec.components.responses.MethodNotAllowed.headers.Allow.required).toBe(true)
    expect(spec.info.description).toMatch(/405/)
  })

  it("types dates as date-time", () => {
    const dates: Array<any> = []
    const visit = (node: any) => {
      if (Array.isArray(node)) return node.forEach(visit)
      if (node === null || typeof node !== "object") return
      if (typeof node.description === "string" && /DateTime|\bDate\b/.test(node.description) && node.type === "string") dates.push(node)
      Object.values(node).forEach(visit)
    }
    visit(document().components.schemas)
    expect(dates.length).toBeGreaterThan(0)
    for (const date of dates) expect(date.format).toBe("date-time")
  })
})

/** What the server's decoding of `input` finds wrong with it. */
const issuesOf = (schema: Schema.Schema<any, any, any>, input: unknown) =>
  Either.match(Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)(input, { errors: "all" }), {
    onLeft: (error) => ParseResult.ArrayFormatter.formatErrorSync(error),
    onRight: () => []
  })

describe("the document and the server agree", () => {
  /** Every endpoint of the API the gateway serves, with its group's prefix. */
  const endpoints: Array<HttpApiEndpoint.HttpApiEndpoint.AnyWithProps> = []
  HttpApi.reflect(api, { onGroup: () => {}, onEndpoint: ({ endpoint }) => void endpoints.push(endpoint as any) })

  it("request bodies accept properties they do not name, as the server does", () => {
    const spec = document()
    const withBody = endpoints.filter((e) => e.method !== "GET")
    expect(withBody.length).toBeGreaterThan(0)
    for (const endpoint of withBody) {
      if (endpoint.payloadSchema._tag === "None") continue
      const route = endpoint.path.replace(/:(\w+)/g, "{$1}")
      const issues = issuesOf(endpoint.payloadSchema.value, { unnamedProperty: 1 })
      // The server ignores an unnamed property...
      expect(issues.filter((i) => i.path[0] === "unnamedProperty"), route).toEqual([])
      // ...and the document does not forbid it anywhere in the body.
      const visit = (schema: any, seen: Set<any>): void => {
        if (schema === null || typeof schema !== "object" || seen.has(schema)) return
        seen.add(schema)
        expect(schema.additionalProperties, `${endpoint.method} ${route}`).not.toBe(false)
        if (typeof schema.$ref === "string") visit(spec.components.schemas[schema.$ref.split("/").pop()], seen)
        Object.values(schema).forEach((value) => visit(value, seen))
      }
      visit(spec.paths[route][endpoint.method.toLowerCase()].requestBody, new Set())
    }
  })

  it("on what each path and query parameter accepts", () => {
    const spec = document()
    const ajv = new Ajv2020({ strict: false })
    const probes = ["1", "2", "100", "0", "101", "-1", "1.5", "1e2", "ten", "", "x".repeat(201), crypto.randomUUID(), "not-a-uuid"]
    let checked = 0
    for (const endpoint of endpoints) {
      const route = endpoint.path.replace(/:(\w+)/g, "{$1}")
      const parameters: Array<any> = spec.paths[route][endpoint.method.toLowerCase()].parameters
      for (const [where, schema] of [["path", endpoint.pathSchema], ["query", endpoint.urlParamsSchema]] as const) {
        if (schema._tag === "None") continue
        for (const parameter of parameters.filter((p) => p.in === where)) {
          const documented = ajv.compile(parameter.schema)
          for (const probe of probes) {
            // A query or path value is text; the document types it by what that text means.
            const numeric = /^-?\d+(\.\d+)?$/.test(probe) && ["integer", "number"].includes(parameter.schema.type)
            const inDocument = documented(numeric ? Number(probe) : probe)
            const issues = issuesOf(schema.value, { [parameter.name]: probe })
            const byServer = issues.every((issue) => issue.path[0] !== parameter.name)
            expect(inDocument, `${endpoint.method} ${route} ${parameter.name}=${JSON.stringify(probe)}`).toBe(byServer)
            checked++
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(0)
  })
})

describe("a typed client generated from the document", () => {
  it("compiles under strict TypeScript, narrowing problems by type without a cast", async () => {
    const types = astToString(await openapiTS(document()))
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-openapi-client-"))
    try {
      fs.writeFileSync(path.join(dir, "api.d.ts"), types)
      fs.writeFileSync(path.join(dir, "client.ts"), CLIENT)
      fs.writeFileSync(path.join(dir, "misuse.ts"), MISUSE)
      const program = ts.createProgram([path.join(dir, "client.ts"), path.join(dir, "misuse.ts")], {
        strict: true,
        exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        lib: ["lib.es2023.d.ts", "lib.dom.d.ts"],
        types: [],
        skipLibCheck: true,
        paths: { "openapi-fetch": [path.join(root, "node_modules/openapi-fetch/dist/index.d.mts")] }
      })
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ({
        file: d.file ? path.basename(d.file.fileName) : "",
        line: d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1,
        text: ts.flattenDiagnosticMessageText(d.messageText, "\n")
      }))
      expect(diagnostics.filter((d) => d.file !== "misuse.ts")).toEqual([])
      // The types are not loose: each misuse is refused, on its own line.
      const refused = new Set(diagnostics.filter((d) => d.file === "misuse.ts").map((d) => d.line))
      const misuses = MISUSE.split("\n").flatMap((line, i) => line.includes("// refused") ? [i] : [])
      expect([...refused].sort((a, b) => a - b)).toEqual(misuses)
      expect(CLIENT).not.toMatch(/\bas\b|<any>|@ts-/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

/** A client as a user of the API writes it: no casts, problems told apart by `type`. */
const CLIENT = `
import createClient from "openapi-fetch"
import type { paths } from "./api.d.ts"

const client = createClient<paths>({ baseUrl: "http://localhost:8080" })

export async function product(id: string): Promise<string> {
  const { data, error, response } = await client.GET("/v1/products/{id}", { params: { path: { id } } })
  if (data !== undefined) {
    const cents: number = data.priceCents
    const created: string = data.createdAt
    return data.name + cents + created
  }
  if (error.type === "/problems/product-not-found") return "no product " + error.productId
  if (error.type === "/problems/validation") return error.errors.map((e) => e.pointer + ": " + e.message).join("; ")
  if (error.type === "/problems/too-many-requests") return "retry in " + error.retryAfterSeconds + " " + response.headers.get("retry-after")
  if (error.type === "/problems/unauthenticated") return error.reason
  const status: number = error.status
  return error.type + " " + status + " " + error.title + " " + error.detail
}

export async function search(q: string, limit: number): Promise<ReadonlyArray<string>> {
  const { data, error } = await client.GET("/v1/products", { params: { query: { q, limit } } })
  if (error !== undefined) {
    if (error.type === "/problems/malformed-body" || error.type === "/problems/validation") return error.errors.map((e) => e.field)
    return [error.detail]
  }
  const next: string | null = data.nextCursor
  return data.items.map((p) => p.sku + (next ?? ""))
}

export async function create(token: string): Promise<string> {
  const { data, error } = await client.POST("/v1/products", {
    headers: { authorization: "Bearer " + token },
    body: { sku: "MUG-1", name: "Mug", priceCents: 850, currency: "EUR" }
  })
  if (error === undefined) return data.id
  switch (error.type) {
    case "/problems/sku-taken": return "taken: " + error.sku
    case "/problems/forbidden": return error.reason
    case "/problems/payload-too-large": return error.detail
    case "/problems/module-unavailable": return "later"
    default: return error.title
  }
}

export async function login(email: string, password: string): Promise<string> {
  const { data, error } = await client.POST("/v1/auth/login", { body: { email, password } })
  if (data !== undefined) return data.tokenType + " " + data.accessToken
  if (error.type === "/problems/invalid-credentials") return "wrong e-mail or password"
  if (error.type === "/problems/unauthenticated") return "refused: " + error.reason
  return error.detail
}
`

/** What the generated types must refuse: each line marked `// refused` is a compile error. */
const MISUSE = `
import createClient from "openapi-fetch"
import type { paths } from "./api.d.ts"

const client = createClient<paths>({ baseUrl: "http://localhost:8080" })

export async function misuse(id: string): Promise<unknown> {
  const { data, error } = await client.GET("/v1/products/{id}", { params: { path: { id } } })
  if (data !== undefined) return data.createdAt.getTime() // refused
  const unnarrowed: string = error.productId // refused
  if (error.type === "/problems/validation") return error.productId // refused
  if (error.type === "/problems/no-such-problem") return error // refused
  await client.GET("/v1/products", { params: { query: { limit: "10" } } }) // refused
  await client.POST("/v1/products", { body: { sku: "MUG-1", name: "Mug", priceCents: 850 } }) // refused
  return unnarrowed
}
`
