/**
 * RFC 9457 problem details: every error the gateway answers is `application/problem+json` with
 * `type`, `title`, `status` and `detail`, plus the error's own fields; validation problems list
 * each bad field by path.
 */
import { HttpApiError, HttpApiSchema, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { RpcClientError } from "@effect/rpc"
import { Cause, Effect, Option, Schema } from "effect"

export const CONTENT_TYPE = "application/problem+json"

export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly [field: string]: unknown
}

/** `ProductNotFound` → `product-not-found`, the problem type's name. */
const kebab = (tag: string) => tag.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase()
/** `ProductNotFound` → `Product not found`. */
const sentence = (tag: string) => {
  const words = kebab(tag).replace(/-/g, " ")
  return words.charAt(0).toUpperCase() + words.slice(1)
}

export const typeOf = (name: string) => `/problems/${kebab(name)}`

export const response = (problem: Problem) =>
  HttpServerResponse.unsafeJson(problem, {
    status: problem.status,
    contentType: CONTENT_TYPE,
    ...(problem.status === 503 ? { headers: { "retry-after": "1" } } : {})
  })

/**
 * The problem form of a contract's tagged error, for `HttpApiEndpoint.addError`: the body is
 * `{type, title, status, detail, ...fields}` with the status of the error's annotation, and the
 * OpenAPI document describes exactly that.
 */
export const schema = <Self extends { readonly _tag: string; readonly message: string }>(
  error: Schema.Schema<Self, any, never> & { readonly fields: Schema.Struct.Fields; readonly _tag: string }
): Schema.Schema<Self, Problem> => {
  const { _tag: _, ...fields } = error.fields
  const tag = error._tag
  const status = HttpApiSchema.getStatusError(error)
  const type = typeOf(tag)
  const title = sentence(tag)
  const Wire = Schema.Struct({
    type: Schema.Literal(type),
    title: Schema.String,
    status: Schema.Literal(status),
    detail: Schema.String,
    ...fields
  }).annotations({ identifier: `${tag}Problem` })
  return Schema.transform(Wire, Schema.typeSchema(error), {
    strict: false,
    decode: ({ detail: _d, status: _s, title: _t, type: _ty, ...rest }) =>
      new (error as unknown as new(props: unknown) => Self)(rest),
    encode: (value) => {
      const body: Record<string, unknown> = { type, title, status, detail: value.message }
      for (const key of Object.keys(fields)) body[key] = (value as unknown as Record<string, unknown>)[key]
      return body as typeof Wire.Encoded
    }
  }).pipe(
    HttpApiSchema.withEncoding({ kind: "Json", contentType: CONTENT_TYPE }),
    (s) => s.annotations(HttpApiSchema.annotations({ status }))
  ) as unknown as Schema.Schema<Self, Problem>
}

const validation = (error: HttpApiError.HttpApiDecodeError): Problem => ({
  type: typeOf("Validation"),
  title: "Request validation failed",
  status: 400,
  detail: error.issues
    .map((issue) => `${issue.path.length === 0 ? "body" : issue.path.join(".")}: ${issue.message}`)
    .join("; "),
  errors: error.issues.map((issue) => ({
    field: issue.path.map(String).join("."),
    pointer: `/${issue.path.map((p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("/")}`,
    message: issue.message
  }))
})

const TOO_LARGE = "maxBytes exceeded"

const isTooLarge = (defect: unknown) =>
  defect instanceof HttpServerError.RequestError &&
  (defect.cause as { message?: unknown } | undefined)?.message === TOO_LARGE

/**
 * The problem response for a failure the endpoint did not declare: invalid input, an unknown
 * route, an unreadable or oversized body, a defect (which is logged, never shown). Declared
 * errors return `None`: their own `schema` renders them.
 */
export const fromCause = (cause: Cause.Cause<unknown>, request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const error = failure.value
      if (error instanceof HttpApiError.HttpApiDecodeError) return Option.some(validation(error))
      if (error instanceof HttpServerError.RouteNotFound) {
        return Option.some<Problem>({
          type: typeOf("RouteNotFound"),
          title: "Not found",
          status: 404,
          detail: `no route for ${request.method} ${request.url.split("?")[0]}`
        })
      }
      if (error instanceof HttpServerError.RequestError) return Option.some(badRequest(error))
      return Option.none<Problem>()
    }
    const defect = Cause.dieOption(cause)
    if (Option.isSome(defect)) {
      if (isTooLarge(defect.value)) return Option.some(tooLarge())
      // HttpApi reads the body with orDie: malformed JSON arrives here as a defect.
      if (defect.value instanceof HttpServerError.RequestError) return Option.some(badRequest(defect.value))
      if (HttpServerResponse.isServerResponse(defect.value)) return Option.none<Problem>()
      // A module this process called could not reach one it calls in turn: its defect arrives
      // here as an Error that kept only the name.
      const unreachable = defect.value instanceof RpcClientError.RpcClientError ||
        (defect.value instanceof Error && defect.value.name === "RpcClientError")
      if (unreachable) {
        yield* Effect.logWarning("a module is unreachable", defect.value)
        return Option.some<Problem>({
          type: typeOf("ModuleUnavailable"),
          title: "Service unavailable",
          status: 503,
          detail: "a part of the system this request needs is unreachable; try again shortly"
        })
      }
    }
    if (Cause.isInterruptedOnly(cause)) return Option.none<Problem>()
    yield* Effect.logError("request failed", cause)
    return Option.some<Problem>({
      type: typeOf("InternalError"),
      title: "Internal server error",
      status: 500,
      detail: "the request could not be completed; it has been logged"
    })
  })

/** A 400 about the whole body: `errors` has one entry for it, as every 400 has `errors`. */
const wholeBody = (type: string, title: string, detail: string): Problem => ({
  type,
  title,
  status: 400,
  detail,
  errors: [{ field: "", pointer: "", message: detail }]
})

const badRequest = (error: HttpServerError.RequestError): Problem =>
  error.cause instanceof SyntaxError
    ? wholeBody(typeOf("MalformedBody"), "Malformed body", `the body is not valid JSON: ${error.cause.message}`)
    : wholeBody(typeOf("BadRequest"), "Bad request", error.description ?? "the request could not be read")

export const tooLarge = (limit?: number): Problem => ({
  type: typeOf("PayloadTooLarge"),
  title: "Payload too large",
  status: 413,
  detail: limit === undefined ? "the body exceeds the size limit" : `the body exceeds the limit of ${limit} bytes`
})

// Answers of the edge and of the HTTP server's limits (Edge.ts, ServerLimits.ts).

export const methodNotAllowed = (method: string, allow: ReadonlyArray<string>): Problem => ({
  type: typeOf("MethodNotAllowed"),
  title: "Method not allowed",
  status: 405,
  detail: `${method.slice(0, 16)} is not allowed here; allowed: ${allow.join(", ")}`
})

export const unsupportedMediaType = (contentType: string | undefined): Problem => ({
  type: typeOf("UnsupportedMediaType"),
  title: "Unsupported media type",
  status: 415,
  detail: contentType === undefined
    ? "a body needs Content-Type: application/json"
    : `the body must be application/json, not ${contentType.slice(0, 64)}`
})

/** A body nested deeper than `limit`: a validation problem about the whole body. */
export const tooDeep = (limit: number): Problem => ({
  type: typeOf("Validation"),
  title: "Request validation failed",
  status: 400,
  detail: `body: JSON nested deeper than ${limit} levels`,
  errors: [{ field: "", pointer: "", message: `JSON nested deeper than ${limit} levels` }]
})

export const tooManyRequests = (retryAfterSeconds: number, detail: string): Problem => ({
  type: typeOf("TooManyRequests"),
  title: "Too many requests",
  status: 429,
  detail,
  retryAfterSeconds
})

export const tooManyConnections = (limit: number): Problem =>
  tooManyRequests(1, `more than ${limit} open connections from this address`)

export const headersTooLarge = (limit: number): Problem => ({
  type: typeOf("RequestHeaderFieldsTooLarge"),
  title: "Request header fields too large",
  status: 431,
  detail: `the request line and headers exceed ${limit} bytes`
})

export const requestTimeout = (): Problem => ({
  type: typeOf("RequestTimeout"),
  title: "Request timeout",
  status: 408,
  detail: "the request did not arrive in time"
})

export const unreadableRequest = (): Problem => ({
  type: typeOf("Validation"),
  title: "Bad request",
  status: 400,
  detail: "the request is not valid HTTP",
  errors: [{ field: "", pointer: "", message: "the request is not valid HTTP" }]
})

export const routeNotFound = (request: HttpServerRequest.HttpServerRequest): Problem => ({
  type: typeOf("RouteNotFound"),
  title: "Not found",
  status: 404,
  detail: `no route for ${request.method.slice(0, 16)} ${request.url.split("?")[0]!.slice(0, 64)}`
})
