/**
 * Resilience end to end: the built release split across three processes on PostgreSQL
 * (SplitDeployment.ts: gateway + catalog + identity; inventory; catalog alone for the second
 * hop), with a fault proxy on each module-to-module path and SIGSTOP / SIGCONT of a process.
 *
 * The processes are started once and the cases run in order on them, each leaving inventory's
 * breaker closed for the next. Policies are short here (a 1 s request deadline, a breaker that
 * judges after 3 calls and stays open 1 s) so the suite stays quick; they are settings, so the code is the production
 * one. Nothing is asserted about speed (bench/resilience.bench.ts measures): where a case waits
 * for an answer, the bound only says an answer came at all, many deadlines later than due. The
 * breaker cycle's timings are printed for the record.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import * as FaultProxy from "./runtime/testing/FaultProxy.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as SplitDeployment from "./runtime/testing/SplitDeployment.ts"

/** Every request's deadline at the gateway. */
const DEADLINE_MS = 1_000
/** How long the breaker stays open before it lets a probe through. */
const OPEN_MS = 1_000
/** Calls the breaker's window needs before it judges the failure rate. */
const MIN_CALLS = 3
/** Retries of an idempotent call after a transport failure: attempts are one more. */
const RETRIES = 2
const MAX_ATTEMPTS = RETRIES + 1
/** How long a test waits for any one answer before it calls the gateway unresponsive. */
const ANSWER_BOUND_MS = 8 * DEADLINE_MS

/**
 * Short policies for every process (the README's settings table). The per-call timeout and
 * deadline keep their defaults (5 s, 10 s), far longer than the gateway's: a call that ends
 * sooner ended by the deadline it was given, not by one of its own.
 */
const POLICY = {
  TESSERA_REQUEST_DEADLINE: `${DEADLINE_MS} millis`,
  TESSERA_BREAKER_MIN_CALLS: String(MIN_CALLS),
  TESSERA_BREAKER_FAILURE_RATE: "50",
  TESSERA_BREAKER_OPEN_FOR: `${OPEN_MS} millis`,
  TESSERA_CALL_RETRIES: String(RETRIES),
  // Breaker transitions are info lines.
  LOG_LEVEL: "info"
}
/** Inventory's connection to the catalog stays up across a slowed hop (the front's keeps the default). */
const SLOW_HOP_HEARTBEAT = { TESSERA_RPC_HEARTBEAT_TIMEOUT: "20 seconds" }
/** The per-call timeout inventory's own call to the catalog would have without a deadline given. */
const OWN_CALL_TIMEOUT_MS = 5_000

const postgres = await Services.findPostgres()
const skipped = postgres.ok ? undefined : Services.unavailable("PostgreSQL", postgres.reason)

/** Breaker states, as this suite spells them. */
type BreakerState = "closed" | "open" | "half-open"

/** `Closed`, `HalfOpen`, `half_open`... as this suite spells it. */
const stateName = (raw: unknown): BreakerState | undefined => {
  const name = String(raw).toLowerCase().replace(/[^a-z]/g, "")
  return name === "closed" ? "closed" : name === "open" ? "open" : name === "halfopen" ? "half-open" : undefined
}

/**
 * The state of a process's breaker for `module`, from its `GET /v1/admin/resilience`: one entry
 * per dependency (`target`), each with its breaker (null for a module in the same process).
 */
const breakerOf = (view: { readonly dependencies: ReadonlyArray<{ readonly target: string; readonly breaker: { readonly state: string } | null }> }, module: string) =>
  stateName(view.dependencies.find((d) => d.target === module)?.breaker?.state)

/** The breaker transitions for `module` among the JSON log lines in `output`, in order: `from>to`. */
const transitionsIn = (output: string, module: string): Array<string> =>
  output.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return []
    let entry: any
    try {
      entry = JSON.parse(line)
    } catch {
      return []
    }
    const text = typeof entry.message === "string" ? entry.message : JSON.stringify(entry.message)
    if (!/breaker/i.test(text) || !text.includes(module)) return []
    const from = stateName(entry.from ?? /from (\w+)/i.exec(text)?.[1])
    const to = stateName(entry.to ?? /to (\w+)/i.exec(text)?.[1])
    return from && to ? [`${from}>${to}`] : []
  })

/** The lane's call frames among WebSocket messages (JSON arrays of frames), with `t` the rpc. */
const framesIn = (messages: ReadonlyArray<string>): Array<{ i: number; t?: string; d?: number; x?: number }> =>
  messages.flatMap((message) => {
    try {
      const frames = JSON.parse(message)
      return Array.isArray(frames) ? frames.filter((f) => typeof f === "object" && f !== null && "i" in f) : []
    } catch {
      return []
    }
  })
const callsOf = (proxy: FaultProxy.FaultProxy, rpc: string) => framesIn(proxy.messages("toTarget")).filter((f) => f.t === rpc)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a value other than undefined, or fails naming `what`. */
const until = async <A>(what: string, check: () => Promise<A | undefined> | A | undefined, timeoutMs = 20_000): Promise<A> => {
  const end = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

if (skipped !== undefined) {
  describe.skip("resilience across processes", () => it(skipped, () => {}))
} else {
  describe("resilience across processes on PostgreSQL", () => {
    let deployment: SplitDeployment.SplitDeployment
    let api: Awaited<ReturnType<typeof SplitDeployment.adminClient>>
    const checked = OpenApiConformance.checkedFetch()
    /** Timings measured along the way, printed at the end for the record. */
    const timings: Record<string, number> = {}

    /** A request with a bound on the wait; returns the answer and how long it took. */
    const timed = async (route: string, init: RequestInit & { readonly json?: unknown } = {}) => {
      const started = performance.now()
      const response = await api(route, { ...init, signal: AbortSignal.timeout(ANSWER_BOUND_MS) })
      const text = await response.text()
      return {
        status: response.status,
        headers: response.headers,
        body: text === "" ? undefined : JSON.parse(text),
        ms: performance.now() - started
      }
    }

    const createProduct = async () => {
      const created = await timed("/v1/products", {
        json: { sku: `SKU-${Math.random().toString(36).slice(2, 10)}`, name: "Widget", priceCents: 100, currency: "EUR" }
      })
      expect(created.status).toBe(201)
      return created.body.id as string
    }
    const stocked = async (units: number) => {
      const id = await createProduct()
      expect((await timed(`/v1/products/${id}/stock`, { json: { quantity: units } })).status).toBe(200)
      return id
    }

    const breaker = async () => {
      const view = await timed("/v1/admin/resilience")
      expect(view.status).toBe(200)
      return breakerOf(view.body, "inventory")
    }

    /** Waits until a stock read succeeds and inventory's breaker is closed, as each case starts and ends. */
    const healthy = (probe: string) =>
      until("inventory to serve again with its breaker closed", async () => {
        const read = await timed(`/v1/products/${probe}/stock`)
        if (read.status !== 200) {
          await sleep(Math.min(1_000, 1_000 * Number(read.headers.get("retry-after") ?? 0.2)))
          return undefined
        }
        return (await breaker()) === "closed" ? true : undefined
      }, 30_000)

    /** Reads stock until the breaker opens; returns the answers on the way. */
    const untilOpen = (probe: string) => {
      const answers: Array<{ status: number; ms: number }> = []
      return until("inventory's breaker to open", async () => {
        const read = await timed(`/v1/products/${probe}/stock`)
        answers.push({ status: read.status, ms: read.ms })
        expect([200, 502, 503, 504]).toContain(read.status)
        return read.status === 503 && (await breaker()) === "open" ? answers : undefined
      }, 30_000)
    }

    /** The shape every answer of a failed dependency has: problem+json, and whether it may have run. */
    const expectProblem = (answer: { status: number; headers: Headers; body: any }) => {
      expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/)
      expect(answer.body).toMatchObject({ status: answer.status })
      if (answer.status === 503) expect(Number(answer.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
    }

    let probe: string

    beforeAll(async () => {
      deployment = await SplitDeployment.start({
        env: POLICY,
        // The second hop is slowed by seconds each way in the two-hop case; a heartbeat that
        // gave up on it sooner would close the connection and, with it, the call being watched.
        perProcess: { inventory: SLOW_HOP_HEARTBEAT, catalog: SLOW_HOP_HEARTBEAT }
      })
      api = await SplitDeployment.adminClient(deployment.gateway, checked)
      probe = await stocked(7)
    })

    // A case that fails midway leaves no fault behind for the next.
    afterEach(() => {
      if (deployment === undefined) return
      deployment.proxies.inventory.set(FaultProxy.pass)
      deployment.proxies.catalog.set(FaultProxy.pass)
      SplitDeployment.thaw(deployment.inventory)
    })

    afterAll(async () => {
      await deployment?.stop()
      if (Object.keys(timings).length > 0) console.log(`resilience timings (ms): ${JSON.stringify(timings)}`)
    })

    it("the breaker goes closed → open → half-open → open → half-open → closed, driven through the proxy", async () => {
      await healthy(probe)
      const logFrom = deployment.front.output().length
      const transitions = () => transitionsIn(deployment.front.output().slice(logFrom), "inventory")
      /** The transitions logged once there are `count` (a log line may trail the state it reports). */
      const logged = (count: number) =>
        until(`${count} breaker transition(s) in the log`, () => transitions().length >= count ? transitions() : undefined, 5_000)
      const proxy = deployment.proxies.inventory

      // A partition: the open connection and every new one swallow everything, so calls time out.
      const faultAt = performance.now()
      proxy.set(FaultProxy.blackhole)
      const failing = await untilOpen(probe)
      timings.faultToOpen = performance.now() - faultAt
      // The breaker counts attempts (retries included), so fewer requests than MIN_CALLS may open it.
      timings.requestsUntilOpen = failing.length
      expect(await logged(1)).toEqual(["closed>open"])

      // Open: refused at once, saying when to try again.
      const refused = await timed(`/v1/products/${probe}/stock`)
      expect(refused.status).toBe(503)
      expectProblem(refused)
      timings.openRefusal = refused.ms

      // Once the open time is up, one call is let through as a probe; it meets the same
      // partition and is held no longer than its deadline: open again.
      const openedAt = performance.now()
      await until("a probe to fail and the breaker to open again", async () => {
        await sleep(OPEN_MS / 4)
        await timed(`/v1/products/${probe}/stock`)
        return transitions().length >= 3 ? true : undefined
      })
      timings.openToFailedProbe = performance.now() - openedAt
      expect(await logged(3)).toEqual(["closed>open", "open>half-open", "half-open>open"])

      // The partition heals. No call is made until the lane to inventory is open again (its
      // handshake's answer crosses the proxy), so the next probe meets a working path.
      const healedAt = performance.now()
      const before = proxy.counts()
      proxy.set(FaultProxy.pass)
      await until("the lane to inventory to reconnect", () => {
        const now = proxy.counts()
        return now.accepted > before.accepted && now.bytes.toClient > before.bytes.toClient ? true : undefined
      })
      timings.healToReconnected = performance.now() - healedAt
      await healthy(probe)
      timings.healToClosed = performance.now() - healedAt

      expect(await logged(5)).toEqual([
        "closed>open",
        "open>half-open",
        "half-open>open",
        "open>half-open",
        "half-open>closed"
      ])
    }, 90_000)

    it("a frozen inventory: calls fail within the deadline, then at once; they succeed after SIGCONT; a restock without a key runs at most once", async () => {
      await healthy(probe)
      const other = await stocked(3)
      const restocked = await createProduct()
      SplitDeployment.freeze(deployment.inventory)
      try {
        // A non-idempotent call into the freeze: sent, never answered, so it may have run (504,
        // or 502 had the connection been lost first); it may run when the process wakes, once.
        const restock = await timed(`/v1/products/${restocked}/stock`, { json: { quantity: 5 } })
        expect([502, 504]).toContain(restock.status)
        expectProblem(restock)
        expect(restock.body.detail).toMatch(/may have been carried out/)

        // With the breaker still closed, a read waits out its deadline: 504.
        const failing = await untilOpen(probe)
        expect(failing[0]!.status).toBe(504)
        for (const answer of failing) expect(answer.status).not.toBe(200)
        timings.frozenFirstFailure = failing[0]!.ms

        const fast = await timed(`/v1/products/${probe}/stock`)
        expect(fast.status).toBe(503)
        expectProblem(fast)
        timings.frozenOpenRefusal = fast.ms
      } finally {
        SplitDeployment.thaw(deployment.inventory)
      }
      await healthy(probe)

      // Answers go to their own calls: the replies the frozen process sent late went nowhere.
      const read = await timed(`/v1/products/${other}/stock`)
      expect(read).toMatchObject({ status: 200, body: { productId: other, available: 3, reserved: 0 } })

      // Whatever ran of the restock ran once; give a late run time to land before the last look.
      await sleep(2 * DEADLINE_MS)
      const after = await timed(`/v1/products/${restocked}/stock`)
      expect(after.status).toBe(200)
      expect([0, 5]).toContain(after.body.available)
    }, 120_000)

    it("no retry storm: calls reaching a failing inventory stay within requests × attempts, and stop while the breaker is open", async () => {
      await healthy(probe)
      const proxy = deployment.proxies.inventory
      proxy.resetCounts()
      SplitDeployment.freeze(deployment.inventory)
      try {
        const requests = 8
        const answers = await Promise.all(Array.from({ length: requests }, () => timed(`/v1/products/${probe}/stock`)))
        for (const answer of answers) expect([502, 503, 504]).toContain(answer.status)
        const more = await untilOpen(probe)
        const sent = callsOf(proxy, "get").length
        // The reads above, plus those `untilOpen` sent, each at most MAX_ATTEMPTS times.
        expect(sent).toBeLessThanOrEqual((requests + more.length) * MAX_ATTEMPTS)
        timings.callsReachingFrozenInventory = sent

        // Open: nothing more reaches inventory, however many ask.
        const before = callsOf(proxy, "get").length
        const refused = await Promise.all(Array.from({ length: 20 }, () => timed(`/v1/products/${probe}/stock`)))
        for (const answer of refused) expect(answer.status).toBe(503)
        expect(callsOf(proxy, "get").length).toBe(before)
      } finally {
        SplitDeployment.thaw(deployment.inventory)
      }
      await healthy(probe)
    }, 120_000)

    it("a deadline crosses two hops: with catalog slowed, inventory's call to it is cancelled when the gateway's deadline passes", async () => {
      await healthy(probe)
      const product = await createProduct()
      const hop = deployment.proxies.catalog
      hop.resetCounts()
      // The catalog's answer reaches the proxy `slow` after the call did: well after the
      // gateway's deadline (1 s), well before inventory's own call timeout (5 s).
      const slow = (DEADLINE_MS + OWN_CALL_TIMEOUT_MS) / 2
      hop.set(FaultProxy.delay(slow))
      try {
        // Restock asks the catalog whether the product exists, then adds the units.
        const restock = await timed(`/v1/products/${product}/stock`, { json: { quantity: 2 } })
        expect([502, 503, 504]).toContain(restock.status)
        expectProblem(restock)

        // Inventory's call carried what was left of the gateway's deadline, not its own 5 s.
        const call = await until("inventory's call to the catalog", () =>
          framesIn(hop.arrivals().filter((a) => a.direction === "toTarget").map((a) => a.message)).find((f) => f.t === "get"))
        expect(call.d).toBeGreaterThan(0)
        expect(call.d).toBeLessThanOrEqual(DEADLINE_MS)

        // Inventory gave up on it before the catalog's answer reached the proxy: sooner than its
        // own timeout could have, so what ended it was the deadline it was given.
        const first = await until("inventory's interrupt or the catalog's answer", () =>
          hop.arrivals().find((a) =>
            framesIn([a.message]).some((f) =>
              f.i === call.i && (a.direction === "toTarget" ? f.x === 1 : "v" in f || "e" in f || "u" in f)
            )
          ), 3 * slow)
        expect(first.direction).toBe("toTarget")
        // And the interrupt reaches the catalog, which stops the call if it still runs.
        await until("the interrupt to reach the catalog", () =>
          framesIn(hop.messages("toTarget")).some((f) => f.i === call.i && f.x === 1) ? true : undefined, 3 * slow)
      } finally {
        hop.set(FaultProxy.pass)
      }
      // Inventory stopped when its caller's deadline passed: the units were never added. (Reading
      // a product never restocked asks the catalog too, behind what the slow hop still holds.)
      const stock = await until("the stock to be readable once the hop is fast again", async () => {
        const read = await timed(`/v1/products/${product}/stock`)
        return read.status === 200 ? read : undefined
      })
      expect(stock.body).toMatchObject({ productId: product, available: 0, reserved: 0 })
    }, 60_000)

    it("fault isolation: with inventory frozen, catalog reads keep answering", async () => {
      await healthy(probe)
      const product = await createProduct()
      SplitDeployment.freeze(deployment.inventory)
      try {
        // Something is waiting on the frozen process meanwhile.
        const pending = timed(`/v1/products/${probe}/stock`)
        for (let i = 0; i < 20; i++) {
          const read = await timed(`/v1/products/${product}`)
          expect(read.status).toBe(200)
          expect(read.body.id).toBe(product)
        }
        expect((await timed("/v1/products?limit=5")).status).toBe(200)
        expect([502, 503, 504]).toContain((await pending).status)
      } finally {
        SplitDeployment.thaw(deployment.inventory)
      }
      await healthy(probe)
    }, 60_000)
  })
}
