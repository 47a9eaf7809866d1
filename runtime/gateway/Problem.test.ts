/**
 * Problem.fromCause renders what the endpoints did not declare; here, that it stays bounded and
 * quotes nothing it should not, whatever the request was.
 */
import { HttpApiError, HttpApiSchema, HttpServerError, HttpServerRequest } from "@effect/platform"
import { Cause, Effect, Option, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { InputRejected } from "../db/PgError.ts"
import * as Text from "../schema/Text.ts"
import * as Problem from "./Problem.ts"

const request = (url = "http://localhost/v1/auth/login", method = "POST") =>
  HttpServerRequest.fromWeb(new Request(url, { method }))

const render = (cause: Cause.Cause<unknown>, req = request()) =>
  Option.getOrThrow(Effect.runSync(Problem.fromCause(cause, req)))

/** The problem of decoding `input` with an endpoint's payload schema, as HttpApiBuilder reports it. */
const decodeProblem = (schema: Schema.Schema<any, any>, input: unknown) => {
  const error = Schema.decodeUnknownEither(Problem.payload(schema))(input)
  if (error._tag === "Right") throw new Error("expected a failure")
  return render(Cause.fail(Effect.runSync(HttpApiError.HttpApiDecodeError.fromParseError(error.left))))
}

/** Payloads shaped as identity's (runtime imports no module). */
const Credentials = Schema.Struct({ email: Text.emailLookup, password: Schema.Redacted(Text.secret({ minLength: 0, maxLength: 256 })) })
const Registration = Schema.Struct({
  email: Text.email,
  password: Schema.Redacted(Text.secret({ minLength: 8, maxLength: 256 })),
  name: Text.line({ maxLength: 200 })
})

const SECRET = "Zq7-the-password"
const deep = JSON.parse(`${"[".repeat(10_000)}"${SECRET}"${"]".repeat(10_000)}`)

describe("Problem.fromCause", () => {
  it("lists at most 20 errors, each message cut, and says how many more there were", () => {
    const issues = Array.from({ length: 1_000 }, (_, i) => ({
      _tag: "Type" as const,
      path: [`field${i}`],
      message: `Expected string, actual "${"x".repeat(10_000)}"`
    }))
    const problem = render(Cause.fail(new HttpApiError.HttpApiDecodeError({ issues, message: "x".repeat(100_000) })))
    const errors = problem.errors as ReadonlyArray<{ field: string; message: string }>
    expect(problem.status).toBe(400)
    expect(errors).toHaveLength(Problem.MAX_ERRORS)
    for (const error of errors) expect(error.message.length).toBeLessThanOrEqual(201)
    expect(errors[0]!.message).toMatch(/^Expected string, actual "x{63}…$/)
    expect(problem.detail).toMatch(/and 997 more$/)
    expect(JSON.stringify(problem).length).toBeLessThan(6_000)
  })

  it("never quotes a password or a body back, however the body is shaped", () => {
    for (const input of [SECRET, [SECRET], deep, { email: deep, password: deep }, { email: "a@b.co", password: SECRET.repeat(100) }]) {
      for (const schema of [Credentials, Registration]) {
        const problem = decodeProblem(schema, input)
        expect(problem.status).toBe(400)
        expect(JSON.stringify(problem)).not.toContain("Zq7")
        expect(JSON.stringify(problem).length).toBeLessThan(2_000)
      }
    }
    expect(decodeProblem(Credentials, SECRET).errors).toEqual([
      { field: "", pointer: "", message: "the body must be a JSON object" }
    ])
  })

  it("never quotes the value of a field whose name says it is secret, even in a default message", () => {
    const Plain = Schema.Struct({ password: Schema.String, apiKey: Schema.Number, name: Schema.Number })
    const error = Schema.decodeUnknownEither(Plain)({ password: 1, apiKey: SECRET, name: SECRET }, { errors: "all" })
    if (error._tag === "Right") throw new Error("expected a failure")
    const problem = render(Cause.fail(Effect.runSync(HttpApiError.HttpApiDecodeError.fromParseError(error.left))))
    const errors = problem.errors as ReadonlyArray<{ field: string; message: string }>
    const messages = Object.fromEntries(errors.map((e) => [e.field, e.message]))
    expect(messages.password).toBe("Expected string")
    expect(messages.apiKey).toBe("Expected number")
    expect(messages.name).toContain("Zq7")
  })

  it("answers JSON that does not parse with a 400 that has errors and does not quote the parser", () => {
    let syntax: unknown
    try {
      JSON.parse(`{"password":"${SECRET}`)
    } catch (error) {
      syntax = error
    }
    const problem = render(Cause.die(new HttpServerError.RequestError({ request: request(), reason: "Decode", cause: syntax })))
    expect(problem).toMatchObject({ type: "/problems/malformed-body", status: 400, errors: [{ field: "", pointer: "" }] })
    expect(JSON.stringify(problem)).not.toContain("Zq7")
  })

  it("answers a value the database refused as data with a 400, in process and from another process alike", () => {
    const remote = Object.assign(new Error("the database refused a value"), { name: "InputRejected" })
    for (const defect of [new InputRejected("22021"), remote]) {
      const problem = render(Cause.die(defect))
      expect(problem).toMatchObject({ type: "/problems/validation", status: 400, errors: [{ field: "", pointer: "" }] })
    }
  })

  it("quotes at most 64 characters of an unknown path", () => {
    const req = request(`http://localhost/${"Zq7".repeat(5_000)}`, "GET")
    const problem = render(Cause.fail(new HttpServerError.RouteNotFound({ request: req })), req)
    expect(problem.status).toBe(404)
    expect(problem.detail.length).toBeLessThan(100)
  })

  it("bounds a declared error's detail, which may quote what was sent", () => {
    class Taken extends Schema.TaggedError<Taken>()("Taken", { name: Schema.String }, HttpApiSchema.annotations({ status: 409 })) {
      override get message() {
        return `${this.name} is taken`
      }
    }
    const encoded = Schema.encodeSync(Problem.schema(Taken))(new Taken({ name: "x".repeat(10_000) }))
    expect(encoded).toMatchObject({ type: "/problems/taken", status: 409 })
    expect(encoded.detail.length).toBeLessThanOrEqual(201)
  })
})
