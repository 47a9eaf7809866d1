/**
 * Checks an answer of the gateway against its OpenAPI document, so that an end-to-end test fails
 * on any answer the document does not describe: the request is matched to an operation by its
 * method and path template, and the answer's status must be one the operation documents, with a
 * documented content type, a body valid against the schema (JSON Schema 2020-12, as OpenAPI 3.1
 * uses, formats included) and every header the response requires (`Retry-After`...).
 *
 * A request that matches no operation must get one of the document's generic answers
 * (`components.responses`): 404 for a path no operation has, 405 with `Allow` for another method.
 * An `OPTIONS` request is a CORS preflight. Paths outside the API (`/health/*`, the document
 * itself, its explorer) are not described and not checked.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js"
import addFormats from "ajv-formats"

/** One answer, as the test received it. */
export interface Answer {
  readonly method: string
  /** The request's URL, or its path and query. */
  readonly url: string
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

/** Served by the gateway's process but not part of the API the document describes. */
const UNDESCRIBED = [/^\/health\//, /^\/openapi\.json$/, /^\/docs$/]

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]

const pointer = (...segments: ReadonlyArray<string>) =>
  "#/" + segments.map((s) => s.replace(/~/g, "~0").replace(/\//g, "~1")).join("/")

export interface Checker {
  /** Throws, naming what does not conform, if `answer` is not one the document describes. */
  readonly check: (answer: Answer) => void
}

export const make = (document: any): Checker => {
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  addFormats(ajv)
  ajv.addSchema(document, "openapi.json")
  const validators = new Map<string, ValidateFunction>()
  const validator = (at: string) => {
    let validate = validators.get(at)
    if (validate === undefined) {
      validate = ajv.compile({ $ref: `openapi.json${at}` })
      validators.set(at, validate)
    }
    return validate
  }

  const templates = Object.keys(document.paths ?? {}).map((template) => ({
    template,
    params: (template.match(/\{/g) ?? []).length,
    pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "[^/]+")}$`)
  })).sort((a, b) => a.params - b.params)

  /** Checks a response object of the document (at `at`) against the answer. */
  const conforms = (answer: Answer, response: any, at: string, where: string) => {
    if (typeof response.$ref === "string") {
      const name = response.$ref.split("/").pop()
      return conforms(answer, document.components.responses[name], pointer("components", "responses", name), where)
    }
    const problems: Array<string> = []
    for (const [name, header] of Object.entries<any>(response.headers ?? {})) {
      const value = answer.headers.get(name)
      if (value === null) {
        if (header.required) problems.push(`the ${name} header is missing`)
        continue
      }
      const type = header.schema?.type
      const typed = type === "integer" || type === "number" ? Number(value) : value
      const validate = validator(`${at}/headers/${pointer(name).slice(2)}/schema`)
      if (!validate(typed)) problems.push(`the ${name} header ${JSON.stringify(value)}: ${ajv.errorsText(validate.errors)}`)
    }
    const content = response.content ?? {}
    const mediaTypes = Object.keys(content)
    if (mediaTypes.length === 0) {
      if (answer.body !== "") problems.push(`a body where none is described: ${answer.body.slice(0, 200)}`)
    } else {
      const received = (answer.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase()
      if (!mediaTypes.includes(received)) {
        problems.push(`content type ${JSON.stringify(received)}, described: ${mediaTypes.join(", ")}`)
      } else if (content[received].schema !== undefined) {
        let body: unknown
        try {
          body = JSON.parse(answer.body)
        } catch {
          problems.push(`a body that is not JSON: ${answer.body.slice(0, 200)}`)
        }
        if (problems.length === 0) {
          const validate = validator(`${at}/content/${pointer(received).slice(2)}/schema`)
          if (!validate(body)) problems.push(`a body ${answer.body.slice(0, 500)} that does not match: ${ajv.errorsText(validate.errors)}`)
        }
      }
    }
    if (problems.length > 0) {
      throw new Error(`${where}: ${answer.status} is not as the OpenAPI document describes it: ${problems.join("; ")}`)
    }
  }

  const check = (answer: Answer) => {
    const url = new URL(answer.url, "http://gateway.invalid")
    const path = url.pathname
    const method = answer.method.toLowerCase()
    const where = `${answer.method.toUpperCase()} ${path}`
    if (UNDESCRIBED.some((pattern) => pattern.test(path))) return
    const matched = templates.find(({ pattern }) => pattern.test(path))
    if (matched === undefined) {
      if (answer.status !== 404) throw new Error(`${where}: ${answer.status} for a path the document does not have (404 described)`)
      return conforms(answer, { $ref: "#/components/responses/RouteNotFound" }, "", where)
    }
    const item = document.paths[matched.template]
    const operation = item[method]
    if (operation === undefined) {
      if (method === "options" && answer.status >= 200 && answer.status < 300) return
      if (answer.status !== 405) throw new Error(`${where}: ${answer.status} for a method the path does not have (405 described)`)
      conforms(answer, { $ref: "#/components/responses/MethodNotAllowed" }, "", where)
      const allowed = (answer.headers.get("allow") ?? "").split(",").map((m) => m.trim().toLowerCase())
      const documented = Object.keys(item).filter((m) => METHODS.includes(m))
      for (const m of documented) {
        if (!allowed.includes(m)) throw new Error(`${where}: Allow ${answer.headers.get("allow")} lacks ${m.toUpperCase()}`)
      }
      return
    }
    const status = String(answer.status)
    const response = operation.responses[status] ?? operation.responses[`${status[0]}XX`] ?? operation.responses.default
    if (response === undefined) {
      throw new Error(
        `${where} (${matched.template}): ${status} is not documented (documented: ${Object.keys(operation.responses).join(", ")}): ` +
          answer.body.slice(0, 300)
      )
    }
    const key = operation.responses[status] ? status : operation.responses[`${status[0]}XX`] ? `${status[0]}XX` : "default"
    conforms(answer, response, pointer("paths", matched.template, method, "responses", key), `${where} (${matched.template})`)
  }

  return { check }
}

/**
 * A `fetch` for tests that checks every answer of a gateway against the document it serves
 * (read once per origin): an answer the document does not describe rejects the promise.
 */
export const checkedFetch = () => {
  const checkers = new Map<string, Promise<Checker>>()
  const checkerFor = (origin: string) => {
    let checker = checkers.get(origin)
    if (checker === undefined) {
      checker = fetch(`${origin}/openapi.json`).then(async (response) => {
        if (response.status !== 200) throw new Error(`${origin}/openapi.json answered ${response.status}`)
        return make(await response.json())
      })
      checker.catch(() => checkers.delete(origin))
      checkers.set(origin, checker)
    }
    return checker
  }

  /** Checks an answer received some other way than through `fetch` (a raw `http.request`). */
  const check = async (origin: string, answer: Answer) => (await checkerFor(origin)).check(answer)

  const checked = async (url: string, init?: RequestInit): Promise<Response> => {
    const response = await fetch(url, init)
    const body = await response.text()
    await check(new URL(url).origin, {
      method: init?.method ?? "GET",
      url,
      status: response.status,
      headers: response.headers,
      body
    })
    return new Response(body === "" ? null : body, { status: response.status, statusText: response.statusText, headers: response.headers })
  }

  return Object.assign(checked, { check })
}
