/** The checker the end-to-end suite runs every answer through: it must fail on what is undescribed. */
import { OpenApi } from "@effect/platform"
import { describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Gateway from "../gateway/Gateway.ts"
import * as OpenApiConformance from "./OpenApiConformance.ts"

const checker = OpenApiConformance.make(structuredClone(OpenApi.fromApi(Gateway.api(modules.filter((m) => m.http !== undefined)))))

const problem = "application/problem+json"
const answer = (method: string, url: string, status: number, body: unknown, headers: Record<string, string> = {}) => ({
  method,
  url,
  status,
  headers: new Headers({ "content-type": status >= 400 ? problem : "application/json", ...headers }),
  body: body === undefined ? "" : JSON.stringify(body)
})
const product = {
  id: "8d6f6f0e-1b0e-4c5e-9a51-6b2f4e1d2c3b",
  sku: "MUG-1",
  name: "Mug",
  description: "",
  priceCents: 850,
  currency: "EUR",
  createdAt: "2026-12-01T10:00:00.000Z"
}
const tooMany = { type: "/problems/too-many-requests", title: "Too many requests", status: 429, detail: "slow down", retryAfterSeconds: 2 }

describe("OpenApiConformance", () => {
  it("passes what the document describes", () => {
    checker.check(answer("GET", `/v1/products/${product.id}`, 200, product))
    checker.check(answer("GET", "/v1/products?limit=2", 429, tooMany, { "retry-after": "2" }))
    checker.check(answer("GET", "/v1/nothing", 404, { type: "/problems/route-not-found", title: "Not found", status: 404, detail: "no" }))
    checker.check(
      answer("PUT", "/v1/products", 405, { type: "/problems/method-not-allowed", title: "Method not allowed", status: 405, detail: "no" }, {
        allow: "GET, POST"
      })
    )
    checker.check(answer("GET", "/health/live", 200, { anything: true }))
  })

  it("fails on a status the operation does not document", () => {
    expect(() => checker.check(answer("GET", `/v1/products/${product.id}`, 409, { ...tooMany, status: 409 }))).toThrow(/409 is not documented/)
  })

  it("fails on a body that does not match, a wrong content type, a missing header", () => {
    expect(() => checker.check(answer("GET", `/v1/products/${product.id}`, 200, { ...product, createdAt: "yesterday" }))).toThrow(/date-time/)
    expect(() => checker.check(answer("GET", `/v1/products/${product.id}`, 200, { ...product, extra: 1 }))).toThrow(/additional/)
    expect(() => checker.check(answer("GET", `/v1/products/${product.id}`, 200, product, { "content-type": "text/plain" }))).toThrow(/content type/)
    expect(() => checker.check(answer("GET", "/v1/products", 429, tooMany))).toThrow(/Retry-After/)
    const malformed = { type: "/problems/malformed-body", title: "Malformed body", status: 400, detail: "not JSON" }
    expect(() => checker.check(answer("POST", "/v1/products", 400, malformed))).toThrow(/does not match/)
    checker.check(answer("POST", "/v1/products", 400, { ...malformed, errors: [{ field: "", pointer: "", message: "not JSON" }] }))
  })

  it("fails on an unknown path or method answered otherwise than described", () => {
    expect(() => checker.check(answer("GET", "/v1/nothing", 200, {}))).toThrow(/404 described/)
    expect(() => checker.check(answer("PUT", "/v1/products", 404, { type: "/problems/route-not-found", title: "t", status: 404, detail: "d" })))
      .toThrow(/405 described/)
    expect(() =>
      checker.check(answer("PUT", "/v1/products", 405, { type: "/problems/method-not-allowed", title: "t", status: 405, detail: "d" }))
    ).toThrow(/Allow/)
  })
})
