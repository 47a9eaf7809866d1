/**
 * The public REST API: every module's HttpApiGroup composed into one HttpApi and its OpenAPI
 * document. What every request passes through is in Edge.ts.
 *
 * The document is the contract with every client: it describes every answer the server gives
 * to each operation, its declared errors and what the edge may answer to any request (a refused
 * credential, a body too large, a rate limit, an unreachable module...), each as a problem whose
 * `type` is a constant, so that a typed client narrows a problem by its `type`.
 */
import { HttpApi, HttpApiSchema, OpenApi } from "@effect/platform"
import { Effect, Schema } from "effect"
import { STATUS_CODES } from "node:http"
import { DeadLettersHttp } from "../messaging/DeadLettersHttp.ts"
import type { Module } from "../Module.ts"
import { ResilienceHttp } from "../resilience/ResilienceHttp.ts"
import { CallError } from "../transport/CallError.ts"
import * as Auth from "./Auth.ts"
import * as Problem from "./Problem.ts"

/** The id every module's local HttpApi uses, so its group layers fit the composed API. */
export const API_ID = "tessera"

/**
 * Turns a transport failure (a `CallError`) into a defect, which the gateway answers by its kind
 * (Problem.fromCause: 503, 502 or 504): REST handlers declare only domain errors.
 */
export const orUnavailable = <A, E, R>(effect: Effect.Effect<A, E | CallError, R>) =>
  Effect.catchIf(effect, (e): e is CallError => e instanceof CallError, (e) => Effect.die(e)) as Effect.Effect<
    A,
    Exclude<E, CallError>,
    R
  >

/** One bad field of a validation problem: its path, as a dotted name and a JSON pointer. */
const FieldError = Schema.Struct({ field: Schema.String, pointer: Schema.String, message: Schema.String })
const errors = { errors: Schema.Array(FieldError) }

// The answers the gateway gives outside any handler (Problem.fromCause, Edge.ts), as the errors
// of the composed API, so that the document describes them on every operation the same way as
// the errors each endpoint declares. The server never encodes these classes: they describe.

/** The request does not match the operation: `errors` names each bad field. */
export class Validation extends Schema.TaggedError<Validation>()("Validation", errors, HttpApiSchema.annotations({ status: 400 })) {}
/** The body is not JSON at all: `errors` has one entry for the whole body. */
export class MalformedBody extends Schema.TaggedError<MalformedBody>()("MalformedBody", errors, HttpApiSchema.annotations({ status: 400 })) {}
/** The request could not be read. */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", errors, HttpApiSchema.annotations({ status: 400 })) {}
/** The body is over `TESSERA_MAX_BODY_BYTES`. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {}, HttpApiSchema.annotations({ status: 413 })) {}
/** The body is not `application/json`. */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()(
  "UnsupportedMediaType",
  {},
  HttpApiSchema.annotations({ status: 415 })
) {}
/** Too many requests from this client: retry after `retryAfterSeconds` (also the `Retry-After` header). */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()(
  "TooManyRequests",
  { retryAfterSeconds: Schema.Int.pipe(Schema.positive()) },
  HttpApiSchema.annotations({ status: 429 })
) {}
/** The request's headers are too large. */
export class RequestHeaderFieldsTooLarge extends Schema.TaggedError<RequestHeaderFieldsTooLarge>()(
  "RequestHeaderFieldsTooLarge",
  {},
  HttpApiSchema.annotations({ status: 431 })
) {}
/** The request's headers or body did not arrive in time (`TESSERA_HEADERS_TIMEOUT`, `TESSERA_REQUEST_TIMEOUT`). */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {}, HttpApiSchema.annotations({ status: 408 })) {}
/** The request failed on the server; the failure is logged, never shown. */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", {}, HttpApiSchema.annotations({ status: 500 })) {}
/** A part of the system the request needs is unreachable, or did not take it (it was not carried out): retry after `Retry-After` seconds. */
export class ModuleUnavailable extends Schema.TaggedError<ModuleUnavailable>()(
  "ModuleUnavailable",
  {},
  HttpApiSchema.annotations({ status: 503 })
) {}
/**
 * A module the request needs did not answer within the request's deadline
 * (`TESSERA_REQUEST_DEADLINE`): what it was asked may have been done.
 */
export class ModuleTimedOut extends Schema.TaggedError<ModuleTimedOut>()("ModuleTimedOut", {}, HttpApiSchema.annotations({ status: 504 })) {}
/** The connection to a module the request needs was lost before it answered: what it was asked may have been done. */
export class ModuleConnectionLost extends Schema.TaggedError<ModuleConnectionLost>()(
  "ModuleConnectionLost",
  {},
  HttpApiSchema.annotations({ status: 502 })
) {}
/** No route has this path (answered to any method). */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", {}, HttpApiSchema.annotations({ status: 404 })) {}
/** The path exists, not with this method: the `Allow` header lists those it has. */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()(
  "MethodNotAllowed",
  {},
  HttpApiSchema.annotations({ status: 405 })
) {}

/** What any operation may answer besides its own errors. */
const edgeProblems = [
  Problem.schema(Validation),
  Problem.schema(MalformedBody),
  Problem.schema(BadRequest),
  Auth.UnauthenticatedProblem,
  Problem.schema(RequestTimeout),
  Problem.schema(PayloadTooLarge),
  Problem.schema(UnsupportedMediaType),
  Problem.schema(TooManyRequests),
  Problem.schema(RequestHeaderFieldsTooLarge),
  Problem.schema(InternalError),
  Problem.schema(ModuleUnavailable),
  Problem.schema(ModuleConnectionLost),
  Problem.schema(ModuleTimedOut)
]

/** What a request that matches no operation gets: `components.responses`, by name. */
const routingProblems = { RouteNotFound: Problem.schema(RouteNotFound), MethodNotAllowed: Problem.schema(MethodNotAllowed) }

const RETRY_AFTER = {
  description: "Seconds to wait before retrying",
  required: true,
  schema: { type: "integer", minimum: 1 }
}

/** Headers a response of the status always has. */
const HEADERS: Record<string, Record<string, unknown>> = {
  "401": {
    "WWW-Authenticate": { description: "The scheme to authenticate with", required: true, schema: { type: "string" } }
  },
  "405": {
    Allow: { description: "The methods the path has, comma separated", required: true, schema: { type: "string" } }
  },
  "429": { "Retry-After": RETRY_AFTER },
  "503": { "Retry-After": RETRY_AFTER }
}


/** Effect's date schemas that encode to an RFC 3339 date-time, by identifier. */
const DATE_TIMES = new Set(["DateTimeUtc", "DateFromString", "Date"])

const DESCRIPTION = `The public REST API of Tessera.

Every error is an RFC 9457 problem (\`application/problem+json\`) whose \`type\` names it; each
operation lists the problems it may answer, by status. Besides its own, every operation may answer
400 (the request does not match it; \`errors\` names each bad field), 401 (a credential was presented
and refused, also on public operations), 408 (the request arrived too slowly), 413 and 415 (a body
over the size limit, or not JSON, on any request), 429 and 503 (with \`Retry-After\`), 431 and 500, and
502 or 504 when a part of the system lost the request or did not answer it in time: unlike a 503,
the request may then have been carried out, so check before sending it again.

A path that no operation has is answered 404 (\`/problems/route-not-found\`); a path with another
method than the request's is answered 405 (\`/problems/method-not-allowed\`) with an \`Allow\` header:
see \`components.responses\`. \`OPTIONS\` answers CORS preflight requests.`

type Json = any

/** Calls `visit` on every object in `node`, depth first. */
const walk = (node: Json, visit: (node: Record<string, Json>) => void): void => {
  if (Array.isArray(node)) for (const item of node) walk(item, visit)
  else if (node !== null && typeof node === "object") {
    visit(node)
    for (const value of Object.values(node)) walk(value, visit)
  }
}

const SCHEMAS = "#/components/schemas/"
const nameOf = (ref: string) => ref.slice(SCHEMAS.length).replace(/~1/g, "/").replace(/~0/g, "~")
const refTo = (name: string) => `${SCHEMAS}${name}`

/** Renames the components whose names OpenAPI forbids (`catalog/Product` → `catalog.Product`), refs too. */
const renameComponents = (spec: Json) => {
  const schemas: Record<string, Json> = spec.components.schemas
  const renamed = new Map<string, string>()
  const taken = new Set(Object.keys(schemas))
  for (const name of Object.keys(schemas)) {
    if (/^[a-zA-Z0-9._-]+$/.test(name)) continue
    const base = name.replace(/[^a-zA-Z0-9._-]/g, ".")
    let next = base
    for (let i = 2; taken.has(next); i++) next = `${base}${i}`
    taken.add(next)
    renamed.set(name, next)
  }
  spec.components.schemas = Object.fromEntries(Object.entries(schemas).map(([name, s]) => [renamed.get(name) ?? name, s]))
  walk(spec, (node) => {
    if (typeof node.$ref === "string" && node.$ref.startsWith(SCHEMAS)) {
      const name = nameOf(node.$ref)
      node.$ref = refTo(renamed.get(name) ?? name)
    }
  })
}

/** The alternatives of a schema (its `anyOf` members, or itself). */
const alternatives = (schema: Json): Array<Json> =>
  schema?.anyOf && Object.keys(schema).length === 1 ? schema.anyOf.flatMap(alternatives) : [schema]

const resolve = (spec: Json, schema: Json): Json =>
  typeof schema?.$ref === "string" ? resolve(spec, spec.components.schemas[nameOf(schema.$ref)]) : schema

/** The problem types a problem schema may carry. */
const problemTypes = (spec: Json, schema: Json): Array<string> => {
  const type = resolve(spec, schema)?.properties?.type
  return type?.const !== undefined ? [type.const] : (type?.enum ?? [])
}

/** HttpApi's own decode error: the edge answers a validation problem in its place. */
const isDecodeError = (schema: Json) => schema?.$ref === refTo("HttpApiDecodeError")

/** Every error response as a problem, with its headers; none the server does not send. */
const describeErrors = (spec: Json, operation: Json) => {
  const responses: Record<string, Json> = operation.responses
  // 413 and 415 stay on every operation: any request may carry a body, and the edge refuses one
  // over the limit or not JSON before it looks further (a DELETE with a form body is 415).
  for (const [status, response] of Object.entries(responses)) {
    if (Number(status) < 400) continue
    const members = Object.values<Json>(response.content ?? {})
      .flatMap((media) => alternatives(media.schema))
      .filter((schema) => schema !== undefined && !isDecodeError(schema))
    const unique = members.filter((schema, i) => members.findIndex((s) => JSON.stringify(s) === JSON.stringify(schema)) === i)
    const types = unique.flatMap((schema) => problemTypes(spec, schema))
    response.description = `${STATUS_CODES[status] ?? "Error"}: ${types.join(", ")}`
    if (unique.length > 0) {
      response.content = { [Problem.CONTENT_TYPE]: { schema: unique.length === 1 ? unique[0] : { anyOf: unique } } }
    }
    if (HEADERS[status]) response.headers = HEADERS[status]
  }
}

/** Request bodies accept properties they do not name (the server ignores them). */
const openRequestBodies = (spec: Json) => {
  const seen = new Set<Json>()
  const open = (schema: Json) =>
    walk(schema, (node) => {
      if (seen.has(node)) return
      seen.add(node)
      if (node.additionalProperties === false) delete node.additionalProperties
      if (typeof node.$ref === "string" && node.$ref.startsWith(SCHEMAS)) open(resolve(spec, node))
    })
  for (const operations of Object.values<Json>(spec.paths)) {
    for (const operation of Object.values<Json>(operations)) {
      for (const media of Object.values<Json>(operation?.requestBody?.content ?? {})) open(media.schema)
    }
  }
}

/** Drops the components nothing refers to any more (HttpApi's decode error and its parts). */
const pruneComponents = (spec: Json) => {
  const reached = new Set<string>()
  const reach = (node: Json) =>
    walk(node, (n) => {
      if (typeof n.$ref !== "string" || !n.$ref.startsWith(SCHEMAS)) return
      const name = nameOf(n.$ref)
      if (reached.has(name)) return
      reached.add(name)
      reach(spec.components.schemas[name])
    })
  reach(spec.paths)
  reach(spec.components.responses)
  for (const name of Object.keys(spec.components.schemas)) if (!reached.has(name)) delete spec.components.schemas[name]
}

/** The document's last pass: what the definitions cannot say by themselves. */
const complete = (spec: Json) => {
  spec.info.description = DESCRIPTION
  spec.info.contact = { name: "Tessera" }
  spec.servers = [{ url: "/", description: "The gateway that serves this document" }]
  const schemas: Record<string, Json> = spec.components.schemas
  for (const name of DATE_TIMES) if (schemas[name]?.type === "string") schemas[name].format = "date-time"
  for (const operations of Object.values<Json>(spec.paths)) {
    for (const operation of Object.values<Json>(operations)) {
      describeErrors(spec, operation)
      operation.description ??= [
        operation.summary,
        operation.security.length === 0
          ? "Public: needs no credential, but one that is presented must be valid."
          : "Needs a credential: `Authorization: Bearer <access token or API key>` or `X-Api-Key`."
      ].filter((line) => line !== undefined).join(". ")
    }
  }
  spec.components.responses = Object.fromEntries(
    Object.entries(routingProblems).map(([name, schema]) => {
      const status = String(HttpApiSchema.getStatusErrorAST(schema.ast))
      return [name, {
        description: `${STATUS_CODES[status]}: ${Problem.typeOf(name)}`,
        content: { [Problem.CONTENT_TYPE]: { schema: { $ref: refTo(name) } } },
        ...(HEADERS[status] ? { headers: HEADERS[status] } : {})
      }]
    })
  )
  openRequestBodies(spec)
  pruneComponents(spec)
  renameComponents(spec)
  return spec
}

/** The composed HttpApi of every module that adds routes (its groups' layers implement it). */
export const api = (modules: ReadonlyArray<Module.Any>) => {
  let composed: HttpApi.HttpApi.Any = HttpApi.make(API_ID)
  for (const module of modules) if (module.http) composed = (composed as any).add(module.http.group)
  // The runtime's own admin view (resilience/ResilienceHttp.ts).
  composed = (composed as any).add(ResilienceHttp)
  // The dead letters of every subscriber module (messaging/DeadLettersHttp.ts).
  composed = (composed as any).add(DeadLettersHttp)
  for (const problem of edgeProblems) composed = (composed as any).addError(problem)
  return (composed as HttpApi.HttpApi<typeof API_ID, any, any, any>).annotateContext(
    OpenApi.annotations({
      title: "Tessera",
      version: "1",
      transform: complete
    })
  ).annotate(HttpApi.AdditionalSchemas, Object.values(routingProblems))
}
