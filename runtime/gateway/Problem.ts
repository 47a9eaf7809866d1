/**
 * RFC 9457 problem details: every error the gateway answers is `application/problem+json` with
 * `type`, `title`, `status` and `detail`, plus the error's own fields; validation problems list
 * each bad field by path.
 */
import { HttpApiError, HttpApiSchema, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { RpcClientError } from "@effect/rpc"
import { Cause, Effect, Option, Schema } from "effect"
import * as Text from "../schema/Text.ts"
import { CallError } from "../transport/CallError.ts"

export const CONTENT_TYPE = "application/problem+json"

/**
 * Where a problem keeps the seconds of its `Retry-After` header: a symbol, so that it never
 * appears in the body (JSON leaves symbol keys out).
 */
export const retryAfter: unique symbol = Symbol.for("tessera/Problem/retryAfter") as never

export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly [retryAfter]?: number
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
    ...(problem.status === 503 ? { headers: { "retry-after": String(problem[retryAfter] ?? 1) } } : {})
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
      // A message may quote what the request sent (`EmailTaken`): bounded like every other.
      const body: Record<string, unknown> = { type, title, status, detail: Text.quote(value.message, MAX_MESSAGE) }
      for (const key of Object.keys(fields)) body[key] = (value as unknown as Record<string, unknown>)[key]
      return body as typeof Wire.Encoded
    }
  }).pipe(
    HttpApiSchema.withEncoding({ kind: "Json", contentType: CONTENT_TYPE }),
    (s) => s.annotations(HttpApiSchema.annotations({ status }))
  ) as unknown as Schema.Schema<Self, Problem>
}

/** At most this many entries in a validation problem's `errors`; `detail` counts the rest. */
export const MAX_ERRORS = 20
/** At most this many characters in one message or field name. */
const MAX_MESSAGE = 200

const cut = Text.quote

/**
 * A message bounded: the contracts' own Schemas (runtime/schema) never quote a value, but
 * Effect's default messages end with `, actual <the value>`; that value is cut to Text.MAX_QUOTE
 * characters, and the whole message to MAX_MESSAGE.
 */
const bounded = (message: string, secret: boolean) => {
  const actual = message.indexOf(", actual ")
  const quoted = actual === -1
    ? message
    : secret
    ? message.slice(0, actual)
    : `${message.slice(0, actual)}, actual ${cut(message.slice(actual + ", actual ".length), Text.MAX_QUOTE)}`
  return cut(quoted, MAX_MESSAGE)
}

/**
 * A field whose name says it holds a secret: its value is never quoted, even by a default
 * message. The contracts' secrets (`Text.secret`, `format: password` in the OpenAPI document)
 * never quote themselves; this is the second lock, for a secret field declared otherwise.
 */
const SECRET_FIELD = /pass(word|phrase)?|secret|token|credential|key$/i

type Issue = HttpApiError.HttpApiDecodeError["issues"][number]

const fieldOf = (issue: Issue) => cut(issue.path.map(String).join("."), MAX_MESSAGE)
/** The field's JSON Pointer (RFC 6901): `""` for the whole body. */
const pointerOf = (issue: Issue) =>
  cut(issue.path.map((p) => `/${String(p).replace(/~/g, "~0").replace(/\//g, "~1")}`).join(""), MAX_MESSAGE)

/**
 * The validation problem of a request that did not match its endpoint's Schemas: one entry in
 * `errors` per bad field, at most MAX_ERRORS of them, each message bounded (`bounded`). The
 * issues are read as a list; nothing here walks the request's value, so however deep or large
 * it is, the problem stays small. A body that is not a JSON object is refused as a whole (field
 * `""`) by the message `payload` gives it.
 */
const validation = (error: HttpApiError.HttpApiDecodeError): Problem => {
  const shown = error.issues.slice(0, MAX_ERRORS).map((issue) => ({
    field: fieldOf(issue),
    pointer: pointerOf(issue),
    message: bounded(issue.message, issue.path.some((p) => SECRET_FIELD.test(String(p))))
  }))
  return {
    type: typeOf("Validation"),
    title: "Request validation failed",
    status: 400,
    detail: shown.slice(0, 3).map((e) => `${e.field === "" ? "body" : e.field}: ${e.message}`).join("; ") +
      (error.issues.length > 3 ? `; and ${error.issues.length - 3} more` : ""),
    errors: shown
  }
}

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
          detail: `no route for ${request.method} ${Text.quote(request.url.split("?")[0]!)}`
        })
      }
      if (error instanceof HttpServerError.RequestError) return Option.some(badRequest(error))
      if (error instanceof CallError) return Option.some(yield* callFailed(error))
      return Option.none<Problem>()
    }
    const defect = Cause.dieOption(cause)
    if (Option.isSome(defect)) {
      if (isTooLarge(defect.value)) return Option.some(tooLarge())
      // HttpApi reads the body with orDie: malformed JSON arrives here as a defect.
      if (defect.value instanceof HttpServerError.RequestError) return Option.some(badRequest(defect.value))
      if (HttpServerResponse.isServerResponse(defect.value)) return Option.none<Problem>()
      // Input the database refused as data (a module's PgError.die), here or in another process.
      if (defect.value instanceof Error && defect.value.name === "InputRejected") {
        return Option.some(inputRejected())
      }
      // A call between modules failed (here, or in a module that called another and died of it:
      // a CallError crosses the wire as itself).
      if (defect.value instanceof CallError) return Option.some(yield* callFailed(defect.value))
      // The database could not serve in time (db/Gate.ts): here, or in another process, whose
      // defect arrives here as an Error that kept only the name.
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

/**
 * The problem of a call between modules that failed (a `CallError`), by its kind: whether the
 * module may have done what it was asked decides whether the client may simply try again.
 *
 * - NotSent: 503 with `Retry-After` (the breaker's next attempt when it says, else 1 s): it
 *   was not run, trying again is safe;
 * - TimedOut: 504: the module did not answer within the request's deadline; it may have run;
 * - OutcomeUnknown: 502: the connection to the module was lost mid-call; it may have run.
 */
export const callFailed = (error: CallError) =>
  Effect.as(
    Effect.logWarning(`${error.rpc} failed: ${error.kind} (${error.reason})`, error.message),
    fromCallError(error)
  )

export const fromCallError = (error: CallError): Problem => {
  switch (error.kind) {
    case "NotSent":
      return {
        type: typeOf("ModuleUnavailable"),
        title: "Service unavailable",
        status: 503,
        detail: `the ${error.module} module could not take this request (${
          sentence(error.reason).toLowerCase()
        }); it was not carried out: try again shortly`,
        [retryAfter]: error.retryAfterMs === undefined ? 1 : Math.max(1, Math.ceil(error.retryAfterMs / 1000))
      }
    case "TimedOut":
      return {
        type: typeOf("ModuleTimedOut"),
        title: "Gateway timeout",
        status: 504,
        detail: `the ${error.module} module did not answer in time; the request may have been carried out: check before trying again`
      }
    case "OutcomeUnknown":
      return {
        type: typeOf("ModuleConnectionLost"),
        title: "Bad gateway",
        status: 502,
        detail: `the connection to the ${error.module} module was lost before it answered; the request may have been carried out: check before trying again`
      }
  }
}

/**
 * A body that could not be read as JSON. Like every 400 it lists `errors`: one entry, for the
 * whole body. The parser's own message is not shown: it quotes the body.
 */
const badRequest = (error: HttpServerError.RequestError): Problem => {
  const [type, title, detail] = error.cause instanceof SyntaxError
    ? [typeOf("MalformedBody"), "Malformed body", "the body is not valid JSON"]
    : [typeOf("BadRequest"), "Bad request", cut(error.description ?? "the request could not be read", MAX_MESSAGE)]
  return { type, title, status: 400, detail, errors: [{ field: "", pointer: "", message: detail }] }
}

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

/** A request target whose path is not percent-encoded UTF-8: no route can be told from it. */
export const undecodablePath = (): Problem => {
  const message = "the path is not valid percent-encoded UTF-8"
  return {
    type: typeOf("Validation"),
    title: "Request validation failed",
    status: 400,
    detail: `path: ${message}`,
    errors: [{ field: "", pointer: "", message }]
  }
}

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

/**
 * A value the database refused as data (PgError.InputRejected): the Schemas should have refused
 * it first, so which field it was is not known; the problem names the whole request.
 */
export const inputRejected = (): Problem => {
  const message = "a value of this request is not acceptable (the database refused it as data)"
  return {
    type: typeOf("Validation"),
    title: "Request validation failed",
    status: 400,
    detail: message,
    errors: [{ field: "", pointer: "", message }]
  }
}

/**
 * An endpoint's payload Schema as the gateway decodes it (for `HttpApiEndpoint.setPayload`):
 * every bad field reported, not only the first, and a body that is not a JSON object refused
 * with a message of its own, which never quotes the body (Effect's default would quote it whole:
 * a password sent as text/plain, a megabyte array).
 */
export const payload = <A, I, R>(schema: Schema.Schema<A, I, R>): Schema.Schema<A, I, R> =>
  schema.annotations({ parseOptions: { errors: "all" }, message: () => "the body must be a JSON object" })
