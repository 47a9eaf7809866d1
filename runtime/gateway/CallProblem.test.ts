/**
 * The edge's answer to a call between modules that failed (a CallError, whether the handler let
 * it fail the request or died of it): by its kind, saying which module and whether it may have run.
 */
import { HttpServerRequest } from "@effect/platform"
import { Cause, Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { CallError } from "../transport/CallError.ts"
import * as Problem from "./Problem.ts"

const request = HttpServerRequest.fromWeb(new Request("http://localhost/v1/products/p-1/stock"))

const answer = async (cause: Cause.Cause<unknown>) => {
  const problem = Option.getOrThrow(Effect.runSync(Problem.fromCause(cause, request)))
  const response = Problem.response(problem)
  return { status: response.status, retryAfter: response.headers["retry-after"], body: JSON.parse(JSON.stringify(problem)) }
}

const error = (kind: CallError["kind"], reason: CallError["reason"], retryAfterMs?: number) =>
  new CallError({ module: "inventory", rpc: "inventory.reserve", kind, reason, message: "m", ...(retryAfterMs === undefined ? {} : { retryAfterMs }) })

describe("Problem.fromCause for a CallError", () => {
  it.each([
    ["a failure", (e: CallError) => Cause.fail(e)],
    ["a defect", (e: CallError) => Cause.die(e)]
  ])("answers %s by its kind", async (_, cause) => {
    const timedOut = await answer(cause(error("TimedOut", "Deadline")))
    expect(timedOut).toMatchObject({ status: 504, body: { type: "/problems/module-timed-out", status: 504, title: "Gateway timeout" } })
    expect(timedOut.body.detail).toMatch(/inventory module did not answer in time; the request may have been carried out/)
    expect(timedOut.retryAfter).toBeUndefined()

    const lost = await answer(cause(error("OutcomeUnknown", "ConnectionLost")))
    expect(lost).toMatchObject({ status: 502, body: { type: "/problems/module-connection-lost", status: 502, title: "Bad gateway" } })
    expect(lost.body.detail).toMatch(/connection to the inventory module was lost .* may have been carried out/)

    const notSent = await answer(cause(error("NotSent", "Unreachable")))
    expect(notSent).toMatchObject({ status: 503, retryAfter: "1", body: { type: "/problems/module-unavailable", status: 503 } })
    expect(notSent.body.detail).toMatch(/inventory module could not take this request \(unreachable\); it was not carried out/)
  })

  it("says when to retry from the error's retryAfterMs, rounded up to whole seconds, and never puts it in the body", async () => {
    const open = await answer(Cause.fail(error("NotSent", "BreakerOpen", 2_001)))
    expect(open.retryAfter).toBe("3")
    expect(Object.keys(open.body).sort()).toEqual(["detail", "status", "title", "type"])
    expect((await answer(Cause.fail(error("NotSent", "Overloaded", 10)))).retryAfter).toBe("1")
  })
})
