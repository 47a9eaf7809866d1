/**
 * The payment provider simulator answers as its tokens say, keeps one ledger entry per
 * idempotency key, and takes its behaviour (latency, failure rate) from its admin endpoint.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import * as Processes from "../../../runtime/testing/Processes.ts"
import * as PspSim from "./PspSim.ts"

let sim: PspSim.PspSim

beforeAll(async () => {
  sim = await PspSim.start()
})
afterAll(() => sim.close())
beforeEach(async () => {
  await fetch(`${sim.url}/admin/reset`, { method: "POST" })
})

/** A charge under `key` (a fresh one by default; null: none). */
const charge = (token: string, key: string | null = `k-${crypto.randomUUID()}`, amountCents = 1250) =>
  fetch(`${sim.url}/v1/charges`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key === null ? {} : { "idempotency-key": key }) },
    body: JSON.stringify({ amountCents, currency: "EUR", token })
  })

const json = async (response: Response) => ({ status: response.status, body: await response.json() as any })
const ledger = async () => (await json(await fetch(`${sim.url}/admin/ledger`))).body as { charges: Array<any>; refunds: Array<any> }
const behave = (behaviour: object) =>
  fetch(`${sim.url}/admin/behaviour`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(behaviour) })

describe("the payment provider simulator", () => {
  it("charges tok_ok once per idempotency key, answering the same key the same", async () => {
    const first = await json(await charge("tok_ok", "key-1"))
    expect(first).toMatchObject({ status: 201, body: { status: "succeeded", amountCents: 1250, currency: "EUR", idempotencyKey: "key-1" } })
    const again = await json(await charge("tok_ok", "key-1"))
    expect(again).toEqual(first)
    await charge("tok_ok", "key-2")
    expect((await ledger()).charges.map((c) => c.idempotencyKey)).toEqual(["key-1", "key-2"])
  })

  it("refuses a key reused for another charge, and a charge without a key", async () => {
    await charge("tok_ok", "key-r")
    expect((await charge("tok_ok", "key-r", 999)).status).toBe(422)
    expect((await charge("tok_ok", null)).status).toBe(400)
    expect((await ledger()).charges).toHaveLength(1)
  })

  it("declines tok_decline with 402, recording the declined charge", async () => {
    const declined = await json(await charge("tok_decline", "key-d"))
    expect(declined).toMatchObject({ status: 402, body: { error: { code: "card_declined" }, charge: { status: "declined" } } })
    expect((await ledger()).charges).toMatchObject([{ status: "declined" }])
  })

  it("charges tok_ambiguous and drops the connection; the key then answers the charge", async () => {
    await expect(charge("tok_ambiguous", "key-a")).rejects.toThrow()
    const found = await json(await fetch(`${sim.url}/v1/charges?idempotencyKey=key-a`))
    expect(found).toMatchObject({ status: 200, body: { status: "succeeded", idempotencyKey: "key-a" } })
    expect(await json(await charge("tok_ambiguous", "key-a"))).toMatchObject({ status: 201, body: { id: found.body.id } })
    expect((await ledger()).charges).toHaveLength(1)
  })

  it("records tok_slow at once and answers it after 5 s", async () => {
    const started = Date.now()
    const answer = charge("tok_slow", "key-s")
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect((await json(await fetch(`${sim.url}/v1/charges?idempotencyKey=key-s`))).status).toBe(200)
    expect((await answer).status).toBe(201)
    expect(Date.now() - started).toBeGreaterThanOrEqual(PspSim.SLOW_MS - 50)
  }, 10_000)

  it("fails tok_flaky with 503 about half the time, charging only when it answers 201", async () => {
    const statuses = await Promise.all(Array.from({ length: 60 }, (_, i) => charge("tok_flaky", `key-f-${i}`).then((r) => r.status)))
    const failed = statuses.filter((s) => s === 503).length
    expect(failed).toBeGreaterThan(10)
    expect(failed).toBeLessThan(50)
    expect(statuses.every((s) => s === 503 || s === 201)).toBe(true)
    expect((await ledger()).charges).toHaveLength(60 - failed)
  })

  it("answers 404 to a lookup of a key never charged", async () => {
    expect((await fetch(`${sim.url}/v1/charges?idempotencyKey=nothing`)).status).toBe(404)
  })

  it("refunds a charge once, the same key answering the same refund", async () => {
    const charged = (await json(await charge("tok_ok"))).body
    const refund = (key: string) =>
      fetch(`${sim.url}/v1/refunds`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify({ chargeId: charged.id })
      }).then(json)
    const first = await refund("rk-1")
    expect(first).toMatchObject({ status: 201, body: { chargeId: charged.id, amountCents: 1250 } })
    expect(await refund("rk-1")).toEqual(first)
    expect((await refund("rk-2")).status).toBe(409)
    const { charges, refunds } = await ledger()
    expect(refunds).toHaveLength(1)
    expect(charges[0]).toMatchObject({ refunded: true })
  })

  it("fails every call with 503 at errorRate 1, adds latencyMs, and refuses a bad behaviour", async () => {
    expect((await behave({ errorRate: 1 })).status).toBe(200)
    expect((await charge("tok_ok")).status).toBe(503)
    expect((await ledger()).charges).toHaveLength(0)
    await behave({ errorRate: 0, latencyMs: 300 })
    const started = Date.now()
    expect((await charge("tok_ok")).status).toBe(201)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect((await behave({ errorRate: 2 })).status).toBe(400)
    expect((await behave({ latencyMs: -1 })).status).toBe(400)
    expect((await json(await fetch(`${sim.url}/admin/behaviour`))).body).toEqual({ latencyMs: 300, errorRate: 0 })
  })
})

describe("tessera psp-sim", () => {
  it("serves the simulator alone on --port, with its own ledger, until stopped", async () => {
    const port = await Processes.freePort()
    const served = Processes.spawnCommand(["psp-sim", "--port", String(port)], {})
    try {
      const url = `http://127.0.0.1:${port}`
      let ready = false
      for (let i = 0; i < 100 && !ready; i++) {
        ready = await fetch(`${url}/admin/behaviour`).then((r) => r.ok, () => false)
        if (!ready) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      expect(ready, served.output()).toBe(true)
      const charged = await fetch(`${url}/v1/charges`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": "cli-1" },
        body: JSON.stringify({ amountCents: 500, currency: "USD", token: "tok_ok" })
      })
      expect(charged.status).toBe(201)
      expect((await (await fetch(`${url}/admin/ledger`)).json() as any).charges).toMatchObject([{ idempotencyKey: "cli-1", status: "succeeded" }])
    } finally {
      expect(await served.stop()).toBe(0)
    }
  }, 30_000)
})
