/**
 * A payment provider simulator: an HTTP service with its own ledger of charges and refunds that
 * answers as a real provider would, so that payments (and the order saga above it) can be tested
 * against every outcome a provider has. `npx tessera psp-sim --port N` serves it alone; with no
 * `TESSERA_PAYMENT_PROVIDER_URL` the payments module starts one in its own process.
 *
 * The ledger lives in memory, as long as the simulator's process (or, in process, as long as the
 * payments module that started it): a test that kills payments keeps its ledger by running the
 * simulator as a process of its own.
 *
 * Like a real provider it honours the `Idempotency-Key` header on every POST: the same key again
 * gets the same answer (status and body) and never a second charge or refund, also while the
 * first request is still being answered; the same key with another amount, currency or token
 * is refused (422). Payment tokens decide the answer, as card networks' test numbers do:
 *
 *     tok_ok         charged (201)
 *     tok_decline    declined (402), recorded as a declined charge
 *     tok_slow       charged at once, answered after 5 s
 *     tok_flaky      503 (nothing recorded) half the time, else charged
 *     tok_ambiguous  charged, then the connection is dropped before any answer
 *
 * Routes:
 *
 *     POST /v1/charges                  {amountCents, currency, token, reference?}  (Idempotency-Key required)
 *     GET  /v1/charges/{id}             one charge
 *     GET  /v1/charges?idempotencyKey=  the charge made under that key, or 404
 *     POST /v1/refunds                  {chargeId}  (Idempotency-Key required); one refund per charge
 *     POST /admin/behaviour             {latencyMs?, errorRate?}: added latency and a share of 503s, for every call above
 *     GET  /admin/ledger                {charges, refunds, chargeRequests (per key)}
 *     POST /admin/reset                 empties the ledger and resets the behaviour
 */
import { Effect } from "effect"
import { Buffer } from "node:buffer"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

/** A charge as the provider records it. */
export interface SimCharge {
  readonly id: string
  readonly idempotencyKey: string
  readonly status: "succeeded" | "declined"
  readonly amountCents: number
  readonly currency: string
  readonly token: string
  readonly reference: string | undefined
  /** Whether it was refunded (in full). */
  refunded: boolean
  readonly createdAt: string
}

export interface SimRefund {
  readonly id: string
  readonly idempotencyKey: string
  readonly chargeId: string
  readonly amountCents: number
  readonly createdAt: string
}

/** What `GET /admin/ledger` shows. */
export interface Ledger {
  readonly charges: ReadonlyArray<SimCharge>
  readonly refunds: ReadonlyArray<SimRefund>
  /** How many charge requests arrived under each idempotency key (503s and replays included). */
  readonly chargeRequests: Readonly<Record<string, number>>
}

export interface Behaviour {
  /** Added before every call is handled. */
  readonly latencyMs: number
  /** The share of calls (0 to 1) answered 503 before anything is done. */
  readonly errorRate: number
}

/** How long `tok_slow` takes to answer. */
export const SLOW_MS = 5_000

export const TOKENS = ["tok_ok", "tok_decline", "tok_slow", "tok_flaky", "tok_ambiguous"] as const

/** A recorded answer to a POST, replayed to the same idempotency key. */
interface Answer {
  readonly status: number
  readonly body: unknown
}

interface Keyed {
  /** What the first request asked, to refuse the key reused for another request. */
  readonly fingerprint: string
  readonly answer: Promise<Answer>
}

export interface PspSim {
  readonly url: string
  readonly port: number
  readonly ledger: () => Ledger
  readonly close: () => Promise<void>
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const MAX_BODY = 16 * 1024

const readBody = (request: http.IncomingMessage) =>
  new Promise<string>((resolve, reject) => {
    let size = 0
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY) {
        reject(new Error("body too large"))
        request.destroy()
      } else chunks.push(chunk)
    })
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    request.on("error", reject)
  })

const send = (response: http.ServerResponse, answer: Answer) => {
  if (response.destroyed) return
  response.writeHead(answer.status, { "content-type": "application/json" })
  response.end(JSON.stringify(answer.body))
}

const problem = (status: number, code: string, message: string): Answer => ({ status, body: { error: { code, message } } })

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Starts a simulator on `port` (0: any free one) at 127.0.0.1, or `host`. */
export const start = async (options: { readonly port?: number; readonly host?: string } = {}): Promise<PspSim> => {
  const charges: Array<SimCharge> = []
  const refunds: Array<SimRefund> = []
  const chargeRequests = new Map<string, number>()
  const chargeKeys = new Map<string, Keyed>()
  const refundKeys = new Map<string, Keyed>()
  let behaviour: Behaviour = { latencyMs: 0, errorRate: 0 }
  let sequence = 0
  const nextId = (prefix: string) => `${prefix}_${(++sequence).toString().padStart(6, "0")}${Math.random().toString(36).slice(2, 8)}`

  /** Runs `make` once per key; the same key again (while it runs, too) gets its answer. */
  const once = (keys: Map<string, Keyed>, key: string, fingerprint: string, make: () => Promise<Answer>): Promise<Answer> => {
    const found = keys.get(key)
    if (found) {
      return found.fingerprint === fingerprint
        ? found.answer
        : Promise.resolve(problem(422, "idempotency_key_reused", "this idempotency key was used for another request"))
    }
    const answer = make()
    keys.set(key, { fingerprint, answer })
    // A request that failed before it did anything (a 503) is not remembered: the same key may try again.
    void answer.then((a) => {
      if (a.status === 503) keys.delete(key)
    }, () => keys.delete(key))
    return answer
  }

  const charge = (key: string, body: Record<string, unknown>): { answer: Promise<Answer>; drop: boolean } => {
    const { amountCents, currency, reference, token } = body
    if (typeof amountCents !== "number" || !Number.isInteger(amountCents) || amountCents <= 0) {
      return { answer: Promise.resolve(problem(400, "invalid_amount", "amountCents must be a positive integer")), drop: false }
    }
    if (typeof currency !== "string" || !/^[A-Z]{3}$/.test(currency)) {
      return { answer: Promise.resolve(problem(400, "invalid_currency", "currency must be an ISO 4217 code")), drop: false }
    }
    if (typeof token !== "string" || !(TOKENS as ReadonlyArray<string>).includes(token)) {
      return { answer: Promise.resolve(problem(400, "invalid_token", `token must be one of ${TOKENS.join(", ")}`)), drop: false }
    }
    if (reference !== undefined && typeof reference !== "string") {
      return { answer: Promise.resolve(problem(400, "invalid_reference", "reference must be a string")), drop: false }
    }
    const fingerprint = JSON.stringify([amountCents, currency, token])
    const isNew = !chargeKeys.has(key)
    const answer = once(chargeKeys, key, fingerprint, async () => {
      if (token === "tok_flaky" && Math.random() < 0.5) return problem(503, "unavailable", "try again")
      const record: SimCharge = {
        id: nextId("ch"),
        idempotencyKey: key,
        status: token === "tok_decline" ? "declined" : "succeeded",
        amountCents,
        currency,
        token,
        reference,
        refunded: false,
        createdAt: new Date().toISOString()
      }
      charges.push(record)
      if (token === "tok_slow") await sleep(SLOW_MS)
      return record.status === "declined"
        ? { status: 402, body: { error: { code: "card_declined", message: "the card was declined" }, charge: record } }
        : { status: 201, body: record }
    })
    // Only the request that made the charge loses its connection; a replay of the key is answered.
    return { answer, drop: isNew && token === "tok_ambiguous" }
  }

  const refund = (key: string, body: Record<string, unknown>): Promise<Answer> => {
    const { chargeId } = body
    if (typeof chargeId !== "string") return Promise.resolve(problem(400, "invalid_charge", "chargeId must be a string"))
    return once(refundKeys, key, JSON.stringify([chargeId]), async () => {
      const found = charges.find((c) => c.id === chargeId)
      if (found === undefined) return problem(404, "no_such_charge", "no charge has this id")
      if (found.status !== "succeeded") return problem(409, "charge_not_succeeded", "only a succeeded charge can be refunded")
      const prior = refunds.find((r) => r.chargeId === chargeId)
      if (prior) return problem(409, "charge_already_refunded", `charge refunded by ${prior.id}`)
      const record: SimRefund = {
        id: nextId("re"),
        idempotencyKey: key,
        chargeId,
        amountCents: found.amountCents,
        createdAt: new Date().toISOString()
      }
      refunds.push(record)
      found.refunded = true
      return { status: 201, body: record }
    })
  }

  const ledger = (): Ledger => ({ charges: [...charges], refunds: [...refunds], chargeRequests: Object.fromEntries(chargeRequests) })

  const handle = async (request: http.IncomingMessage, response: http.ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://sim")
    const method = request.method ?? "GET"
    const raw = await readBody(request)
    let body: unknown = undefined
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw)
      } catch {
        return send(response, problem(400, "invalid_json", "the body is not JSON"))
      }
    }

    if (url.pathname === "/admin/behaviour" && method === "POST") {
      if (!isObject(body)) return send(response, problem(400, "invalid_body", "expected {latencyMs?, errorRate?}"))
      const { errorRate = behaviour.errorRate, latencyMs = behaviour.latencyMs } = body
      if (typeof latencyMs !== "number" || !Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 600_000) {
        return send(response, problem(400, "invalid_latency", "latencyMs must be an integer from 0 to 600000"))
      }
      if (typeof errorRate !== "number" || !(errorRate >= 0 && errorRate <= 1)) {
        return send(response, problem(400, "invalid_error_rate", "errorRate must be a number from 0 to 1"))
      }
      behaviour = { latencyMs, errorRate }
      return send(response, { status: 200, body: behaviour })
    }
    if (url.pathname === "/admin/behaviour" && method === "GET") return send(response, { status: 200, body: behaviour })
    if (url.pathname === "/admin/ledger" && method === "GET") return send(response, { status: 200, body: ledger() })
    if (url.pathname === "/admin/reset" && method === "POST") {
      charges.length = 0
      refunds.length = 0
      chargeKeys.clear()
      refundKeys.clear()
      chargeRequests.clear()
      behaviour = { latencyMs: 0, errorRate: 0 }
      return send(response, { status: 200, body: behaviour })
    }

    // The provider's own API: latency and failures as the behaviour says.
    const chargeKey = url.pathname === "/v1/charges" && method === "POST" ? request.headers["idempotency-key"] : undefined
    if (typeof chargeKey === "string") chargeRequests.set(chargeKey, (chargeRequests.get(chargeKey) ?? 0) + 1)
    if (behaviour.latencyMs > 0) await sleep(behaviour.latencyMs)
    if (behaviour.errorRate > 0 && Math.random() < behaviour.errorRate) {
      return send(response, problem(503, "unavailable", "the provider is unavailable"))
    }

    if (url.pathname === "/v1/charges" && method === "GET") {
      const key = url.searchParams.get("idempotencyKey")
      if (key === null) return send(response, problem(400, "missing_key", "idempotencyKey is required"))
      const found = charges.find((c) => c.idempotencyKey === key)
      return send(response, found ? { status: 200, body: found } : problem(404, "no_such_charge", "no charge was made under this key"))
    }
    const byId = /^\/v1\/charges\/([^/]+)$/.exec(url.pathname)
    if (byId && method === "GET") {
      const found = charges.find((c) => c.id === decodeURIComponent(byId[1]!))
      return send(response, found ? { status: 200, body: found } : problem(404, "no_such_charge", "no charge has this id"))
    }
    if ((url.pathname === "/v1/charges" || url.pathname === "/v1/refunds") && method === "POST") {
      const key = request.headers["idempotency-key"]
      if (typeof key !== "string" || key.length === 0 || key.length > 255) {
        return send(response, problem(400, "missing_idempotency_key", "the Idempotency-Key header is required (1-255 characters)"))
      }
      if (!isObject(body)) return send(response, problem(400, "invalid_body", "expected a JSON object"))
      if (url.pathname === "/v1/refunds") return send(response, await refund(key, body))
      const { answer, drop } = charge(key, body)
      const answered = await answer
      if (drop) {
        // Charged, and the answer is lost with the connection.
        response.socket?.destroy()
        return
      }
      return send(response, answered)
    }
    return send(response, problem(404, "not_found", `no route ${method} ${url.pathname}`))
  }

  const server = http.createServer((request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) send(response, problem(400, "bad_request", "the request could not be read"))
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${options.host ?? "127.0.0.1"}:${port}`,
    port,
    ledger,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
  }
}

/** A simulator for the life of the scope. */
export const scoped = (options: { readonly port?: number; readonly host?: string } = {}) =>
  Effect.acquireRelease(Effect.promise(() => start(options)), (sim) => Effect.promise(() => sim.close()))
