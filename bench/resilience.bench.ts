/**
 * `npm run bench`, resilience section (issue 11): what the call policies cost, and whether a
 * frozen module slows what does not need it.
 *
 * - policies: the remote call of bench/rpc.bench.ts (`echo.get` to a `tessera serve` child
 *   process, bench/server.ts compiled as the release is), through two RemoteClients built as
 *   Host.ts builds a remote module client: both with the standard interceptors (metrics), one
 *   with the dependency's policy too (Policy.interceptors, defaults: deadline, retry, breaker,
 *   bulkhead, attempt timeout). Both call the same server from this process, taking turns within
 *   each round, sequential and with 32 concurrent callers, each call under a request's deadline
 *   as the edge gives every request (the lane carries it and the callee keeps it, policy or not).
 *   Target: with policies >= 95 % of the calls per second without (they cost <= 5 %). A third
 *   client calls with no deadline at all, printed without a target: the policies and deadline
 *   propagation together against neither.
 * - fault isolation: the release split as the resilience tests split it (SplitDeployment.ts, on
 *   PostgreSQL: gateway + catalog + identity; inventory; catalog), default policies. A client
 *   reads one product (`GET /v1/products/{id}`, served in the front process) back to back, in
 *   three phases per round: quiet (nothing else), busy (8 background callers ask for stock,
 *   `GET /v1/products/{id}/stock`, which needs inventory, 10 times a second each) and frozen (the
 *   same callers, inventory stopped by SIGSTOP; then SIGCONT, and a wait until stock answers).
 *   The figure is the median read latency frozen / quiet: what a frozen module, with its callers
 *   still asking, costs a read that does not need it. Target: <= 1.2 (the reads keep their
 *   latency; the margin is this shared machine's noise). Frozen / busy is printed too: a healthy
 *   inventory's traffic costs the front process more than a frozen one's (refused at once once
 *   the breaker opens). Skipped, saying why, without PostgreSQL.
 *
 * Each figure is warmed up once, then measured BENCH_ROUNDS (3) times for BENCH_SECONDS (3) s;
 * ratios are medians of per-round ratios. A report, not a test: it exits 0 when a target is missed
 * and says MISSED. BENCH_ONLY=resilience runs this section alone.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Duration, Effect, Exit, Redacted, Scope } from "effect"
import * as Build from "../runtime/release/Build.ts"
import * as Policy from "../runtime/resilience/Policy.ts"
import * as Processes from "../runtime/testing/Processes.ts"
import * as Services from "../runtime/testing/Services.ts"
import * as SplitDeployment from "../runtime/testing/SplitDeployment.ts"
import * as Client from "../runtime/transport/Client.ts"
import * as Deadline from "../runtime/transport/Deadline.ts"
import * as RemoteClient from "../runtime/transport/RemoteClient.ts"
import { EchoRpcs } from "./Echo.ts"
import { median, promiseLoops } from "./Measure.ts"

const ONLY = process.env.BENCH_ONLY
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const WARMUP_SECONDS = 1
const CONCURRENT = 32
const ID = "p-1"
const SECRET = Redacted.make("bench-secret-bench-secret-bench-secret")
/** The edge's deadline for a request (TESSERA_REQUEST_DEADLINE's default), in force on every call. */
const REQUEST_DEADLINE = Duration.seconds(10)
/** Policies cost at most 5 % of calls per second. */
const POLICY_TARGET = 95
/** Catalog reads while inventory is frozen take at most this much longer than healthy ones. */
const ISOLATION_TARGET = 1.2

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

interface Row {
  readonly figure: string
  readonly value: string
  readonly target: string
  readonly met: boolean
  readonly detail: string
}

// ---------------------------------------------------------------------------------------------
// Policies on and off.

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url))
const children = new Set<ChildProcess>()
const killAll = () => children.forEach((child) => child.kill("SIGKILL"))
process.once("exit", killAll)

/** Starts bench/server.ts, compiled as the release is, hosting the Echo module. */
const echoServer = async () => {
  const bundle = path.join(Build.dist, "bench-server.mjs")
  await Build.bundle(here("server.ts"), bundle)
  const port = await Processes.freePort()
  const child = spawn(process.execPath, [bundle, "serve"], {
    cwd: here(".."),
    env: { ...process.env, TESSERA_MODULES: "all", LOG_LEVEL: "warn", PORT: String(port), TESSERA_SERVICE_SECRET: Redacted.value(SECRET) },
    stdio: ["ignore", "inherit", "inherit"]
  })
  children.add(child)
  const url = `http://127.0.0.1:${port}`
  for (const end = Date.now() + 60_000; Date.now() < end;) {
    if (child.exitCode !== null) throw new Error(`bench/server.ts exited with ${child.exitCode}`)
    const ok = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.status === 200, () => false)
    if (ok) return { url, stop: () => void child.kill("SIGTERM") }
    await sleep(100)
  }
  throw new Error("bench/server.ts not ready after 60 s")
}

const policies = async (rows: Array<Row>) => {
  console.error("compiling bench/server.ts into dist/ and starting it ...")
  const server = await echoServer()
  const scope = Effect.runSync(Scope.make())
  try {
    // The clients as Host.ts builds a remote module client: the standard interceptors (metrics)
    // and the dependency's policy with its defaults (Policy.interceptors), and the same without
    // the policy. Every call is made as the gateway makes a module call for a request: under the
    // request's deadline (TESSERA_REQUEST_DEADLINE, set once per request by the edge, so here once
    // per call), which the lane carries with or without a policy. A third client makes its calls
    // with no deadline at all: what deadline propagation and the policies cost together.
    const policy = await Effect.runPromise(Policy.fromConfig("echo"))
    const dependency = new Policy.Registry().dependency("echo", policy)
    const variants = [
      { name: "policies on (defaults)", interceptors: [...Client.standard, ...Policy.interceptors(dependency)], deadline: true },
      { name: "policies off", interceptors: Client.standard, deadline: true },
      { name: "no deadline, no policies", interceptors: Client.standard, deadline: false }
    ]
    const calls = await Promise.all(variants.map(async ({ deadline, interceptors }) => {
      const client = await Effect.runPromise(
        RemoteClient.make("echo", EchoRpcs, server.url, { secret: SECRET, caller: "bench", interceptors }).pipe(Scope.extend(scope))
      )
      // Built per call, as a caller would: the client method's own work is part of the path.
      const call = deadline
        ? Effect.suspend(() => Deadline.within(client.get({ id: ID }), REQUEST_DEADLINE))
        : Effect.suspend(() => client.get({ id: ID }))
      // The socket opens in the background; calls fail fast until it has.
      for (let tries = 0;; tries++) {
        const exit = await Effect.runPromiseExit(call)
        if (Exit.isSuccess(exit) && exit.value.id === ID) break
        if (tries > 100) throw new Error(`remote echo.get never answered: ${String(exit)}`)
        await sleep(100)
      }
      return call
    }))

    for (const { mode, callers } of [{ mode: "sequential", callers: 1 }, { mode: `${CONCURRENT} concurrent`, callers: CONCURRENT }]) {
      const run = (i: number, seconds: number) => promiseLoops(() => Effect.runPromise(calls[i]!), callers, seconds)
      for (let i = 0; i < variants.length; i++) await run(i, WARMUP_SECONDS)
      const rounds = variants.map(() => [] as Array<number>)
      for (let round = 0; round < ROUNDS; round++) {
        // Each round starts with another variant, so that none always meets the machine warmer.
        for (let k = 0; k < variants.length; k++) {
          const i = (round + k) % variants.length
          rounds[i]!.push(await run(i, SECONDS))
        }
      }
      console.error(`  remote, ${mode.padEnd(14)} ${variants.map((v, i) => `${v.name}: ${rounds[i]!.map(fmt).join(" / ")}`).join("; ")}`)
      const [on, off, bare] = rounds as [Array<number>, Array<number>, Array<number>]
      const ratio = (xs: ReadonlyArray<number>) => median(xs.map((x, i) => (100 * x) / off[i]!))
      rows.push({
        figure: `remote calls/s, policies on vs off (request deadline in both), ${mode}`,
        value: `${ratio(on).toFixed(1)}%`,
        target: `>= ${POLICY_TARGET}%`,
        met: ratio(on) >= POLICY_TARGET,
        detail: `${fmt(median(on))} vs ${fmt(median(off))} calls/s`
      })
      rows.push({
        figure: `remote calls/s, policies on vs no deadline either, ${mode}`,
        value: `${median(on.map((x, i) => (100 * x) / bare[i]!)).toFixed(1)}%`,
        target: "-",
        met: true,
        detail: `${fmt(median(bare))} calls/s with neither: the policies and deadline propagation together`
      })
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Fault isolation.

const isolation = async (rows: Array<Row>) => {
  const postgres = await Services.findPostgres()
  if (!postgres.ok) {
    console.log(`fault isolation: skipped, no PostgreSQL (${postgres.reason})`)
    return
  }
  if (!Build.isFresh()) {
    console.error("building the release (dist/) ...")
    await Build.build()
  }
  console.error("starting the split deployment (three processes on PostgreSQL) ...")
  const deployment = await SplitDeployment.start()
  try {
    const api = await SplitDeployment.adminClient(deployment.gateway)
    const created = await api("/v1/products", { json: { sku: `BENCH-${Date.now()}`, name: "Bench", priceCents: 100, currency: "EUR" } })
    if (created.status !== 201) throw new Error(`creating a product: ${created.status} ${await created.text()}`)
    const product = ((await created.json()) as { id: string }).id
    const restocked = await api(`/v1/products/${product}/stock`, { json: { quantity: 1 } })
    if (restocked.status !== 200) throw new Error(`restocking: ${restocked.status} ${await restocked.text()}`)

    /**
     * Latencies (ms) of back-to-back catalog reads for `seconds`; with `stockCallers`, beside 8
     * callers asking for stock 10 times a second each (a request that hangs holds its caller).
     */
    const reads = async (seconds: number, stockCallers: boolean) => {
      const latencies: Array<number> = []
      const end = performance.now() + seconds * 1000
      let stop = false
      const background = stockCallers
        ? Array.from({ length: 8 }, async () => {
          while (!stop) {
            const paced = sleep(100)
            await api(`/v1/products/${product}/stock`).then((r) => r.arrayBuffer(), () => undefined)
            await paced
          }
        })
        : []
      while (performance.now() < end) {
        const started = performance.now()
        const response = await api(`/v1/products/${product}`)
        await response.arrayBuffer()
        if (response.status !== 200) throw new Error(`a catalog read answered ${response.status}`)
        latencies.push(performance.now() - started)
      }
      stop = true
      // The stock callers stuck on a frozen inventory are left to finish on their own.
      void Promise.all(background)
      return latencies
    }
    const stockServes = async () => {
      for (const end = Date.now() + 60_000; Date.now() < end;) {
        const response = await api(`/v1/products/${product}/stock`)
        await response.arrayBuffer()
        if (response.status === 200) return
        await sleep(200)
      }
      throw new Error("inventory did not serve again within 60 s of SIGCONT")
    }

    // Three processes to warm (the reads' path and the stock path): longer than one.
    await reads(3 * WARMUP_SECONDS, false)
    await reads(3 * WARMUP_SECONDS, true)
    const phases = ["quiet", "busy", "frozen"] as const
    const medians = { quiet: [] as Array<number>, busy: [] as Array<number>, frozen: [] as Array<number> }
    const p95s = { quiet: [] as Array<number>, busy: [] as Array<number>, frozen: [] as Array<number> }
    for (let round = 0; round < ROUNDS; round++) {
      // Quiet and busy take turns going first, so that neither always meets a warmer machine.
      let quiet: Array<number>
      let busy: Array<number>
      if (round % 2 === 0) {
        quiet = await reads(SECONDS, false)
        busy = await reads(SECONDS, true)
      } else {
        busy = await reads(SECONDS, true)
        quiet = await reads(SECONDS, false)
      }
      SplitDeployment.freeze(deployment.inventory)
      let frozen: Array<number>
      try {
        frozen = await reads(SECONDS, true)
      } finally {
        SplitDeployment.thaw(deployment.inventory)
      }
      await stockServes()
      const measured = { quiet, busy, frozen }
      for (const phase of phases) {
        medians[phase].push(median(measured[phase]))
        p95s[phase].push(percentile(measured[phase], 95))
      }
      console.error(
        `  catalog reads, round ${round + 1}: median ${phases.map((p) => `${p} ${median(measured[p]).toFixed(2)} ms (${measured[p].length})`).join(", ")}`
      )
    }
    /** Median over rounds of each round's `of` / `to`. */
    const ratio = (figures: Record<(typeof phases)[number], Array<number>>, of: (typeof phases)[number], to: (typeof phases)[number]) =>
      median(figures[of].map((x, i) => x / figures[to][i]!))
    const ms = (phase: (typeof phases)[number]) => `${median(medians[phase]).toFixed(2)} ms`
    const frozenToQuiet = ratio(medians, "frozen", "quiet")
    rows.push({
      figure: "catalog read latency, frozen / quiet (median)",
      value: frozenToQuiet.toFixed(2),
      target: `<= ${ISOLATION_TARGET}`,
      met: frozenToQuiet <= ISOLATION_TARGET,
      detail: `${ms("frozen")} vs ${ms("quiet")}`
    })
    rows.push({
      figure: "catalog read latency, frozen / busy (median)",
      value: ratio(medians, "frozen", "busy").toFixed(2),
      target: "-",
      met: true,
      detail: `${ms("frozen")} vs ${ms("busy")}`
    })
    rows.push({
      figure: "catalog read latency, frozen / quiet (p95)",
      value: ratio(p95s, "frozen", "quiet").toFixed(2),
      target: "-",
      met: true,
      detail: "the tail, on a shared machine"
    })
  } finally {
    await deployment.stop()
  }
}

const table = (rows: ReadonlyArray<Row>) => {
  const header = ["figure", "value", "target", "met", "detail"]
  const cells = rows.map((r) => [r.figure, r.value, r.target, r.target === "-" ? "-" : r.met ? "yes" : "MISSED", r.detail])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) => c.map((s, i) => (i === 1 || i === 2 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n")
}

const main = async () => {
  if (ONLY !== undefined && ONLY !== "resilience") return
  const began = Date.now()
  const load = () => os.loadavg()[0]!.toFixed(1)
  console.log(
    `tessera resilience bench: node ${process.version}, ${os.cpus().length} cores, load ${load()}, ${ROUNDS} rounds x ${SECONDS} s (median), warm-up ${WARMUP_SECONDS} s`
  )
  const rows: Array<Row> = []
  await policies(rows)
  await isolation(rows)
  console.log()
  console.log(table(rows))
  console.log(`(load average now ${load()})`)
  const judged = rows.filter((r) => r.target !== "-")
  const missed = judged.filter((r) => !r.met)
  console.log()
  console.log(
    missed.length === 0
      ? `summary: all ${judged.length} resilience targets met in ${Math.round((Date.now() - began) / 1000)} s`
      : `summary: ${missed.length} of ${judged.length} resilience targets MISSED (${missed.map((r) => `${r.figure}: ${r.value}`).join("; ")})`
  )
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    killAll()
    process.exit(1)
  }
)
