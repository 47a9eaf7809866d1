/**
 * The public REST API: every module's HttpApiGroup composed into one HttpApi and its OpenAPI
 * document. What every request passes through is in Edge.ts.
 */
import { HttpApi, OpenApi } from "@effect/platform"
import { RpcClientError } from "@effect/rpc"
import { Effect } from "effect"
import type { Module } from "../Module.ts"
import * as Problem from "./Problem.ts"

/** The id every module's local HttpApi uses, so its group layers fit the composed API. */
export const API_ID = "tessera"

/**
 * Turns a transport failure (the module is unreachable) into a defect that the gateway answers
 * with 503: REST handlers declare only domain errors.
 */
export const orUnavailable = <A, E, R>(effect: Effect.Effect<A, E | RpcClientError.RpcClientError, R>) =>
  Effect.catchIf(
    effect,
    (e): e is RpcClientError.RpcClientError => e instanceof RpcClientError.RpcClientError,
    (e) => Effect.die(e)
  ) as Effect.Effect<A, Exclude<E, RpcClientError.RpcClientError>, R>

/** Makes every error response a problem and documents it so. */
const documentProblems = (spec: Record<string, any>) => {
  spec.components ??= {}
  spec.components.schemas ??= {}
  spec.components.schemas.ValidationProblem = {
    type: "object",
    description: "The request did not match the API: each entry of errors names one bad field.",
    required: ["type", "title", "status", "detail", "errors"],
    properties: {
      type: { type: "string", const: Problem.typeOf("Validation") },
      title: { type: "string" },
      status: { type: "integer", const: 400 },
      detail: { type: "string" },
      errors: {
        type: "array",
        items: {
          type: "object",
          required: ["field", "pointer", "message"],
          properties: { field: { type: "string" }, pointer: { type: "string" }, message: { type: "string" } }
        }
      }
    }
  }
  spec.components.schemas.Problem = {
    type: "object",
    description: "RFC 9457 problem details.",
    required: ["type", "title", "status", "detail"],
    properties: { type: { type: "string" }, title: { type: "string" }, status: { type: "integer" }, detail: { type: "string" } }
  }
  for (const operations of Object.values<any>(spec.paths ?? {})) {
    for (const operation of Object.values<any>(operations)) {
      if (typeof operation !== "object" || operation.responses === undefined) continue
      for (const [status, response] of Object.entries<any>(operation.responses)) {
        if (Number(status) < 400) continue
        const content = response.content ?? {}
        const schema = status === "400" && content["application/json"]?.schema?.$ref?.endsWith("HttpApiDecodeError")
          ? { $ref: "#/components/schemas/ValidationProblem" }
          : (content[Problem.CONTENT_TYPE]?.schema ?? content["application/json"]?.schema ?? { $ref: "#/components/schemas/Problem" })
        response.content = { [Problem.CONTENT_TYPE]: { schema } }
      }
      operation.responses["500"] ??= {
        description: "Internal server error",
        content: { [Problem.CONTENT_TYPE]: { schema: { $ref: "#/components/schemas/Problem" } } }
      }
    }
  }
  delete spec.components.schemas.HttpApiDecodeError
  return spec
}

/** The composed HttpApi of every module that adds routes (its groups' layers implement it). */
export const api = (modules: ReadonlyArray<Module.Any>) => {
  let composed: HttpApi.HttpApi.Any = HttpApi.make(API_ID)
  for (const module of modules) if (module.http) composed = (composed as any).add(module.http.group)
  return (composed as HttpApi.HttpApi<typeof API_ID, any, any, any>).annotateContext(
    OpenApi.annotations({
      title: "Tessera",
      version: "1",
      description: "The public REST API of Tessera. Errors are RFC 9457 problem details.",
      transform: documentProblems
    })
  )
}
