/**
 * `npm run bench`: what one module-to-module call costs, beside what the machine could do.
 *
 * One small RPC (`echo.get`, bench/Echo.ts: `{ id }` in, a product-shaped Schema.Class out, no
 * database) is called, sequentially and by 32 concurrent callers, each way measured twice: as a
 * process runs by default (a span for every call) and with `TESSERA_RPC_TRACING=false`.
 *
 * - in process: through the client a real process gets (`Host.make(...).clients`: `LocalClient`,
 *   with its Schema copies, a fiber per call, transaction guard, metrics and span), one `Effect.runPromise`
 *   per call. Ceiling: the same handler function called directly, one `Effect.runPromise` per
 *   call. Target: >= 50% of the ceiling.
 * - remote: child processes running the production `tessera serve` (bench/server.ts, compiled
 *   as the release is: Build.bundle, no `keepNames`) hosting the Echo module, called from this process through `RemoteClient.make` (the lane: WebSocket, JSON frames), one
 *   `Effect.runPromise` per call. Ceiling: a bare `node:http` server in a child process
 *   (bench/bare-server.ts) answering the same JSON, driven by autocannon (keep-alive, one
 *   connection per caller). Target: >= 30% of the ceiling at 32 concurrent callers (the
 *   sequential ratio is printed too, with no target).
 *
 * Each figure is warmed up once (~1 s), then measured for ~3 s in each of 3 rounds; a figure is
 * the median of its rounds. Within a round a path and its ceiling run back to back (in process,
 * taking turns every half second), so drift on this shared 2-core machine hits both alike; the
 * ratio is the median of the per-round ratios.
 * The bench is a report, not a test: it exits 0 when a target is missed and says MISSED.
 * BENCH_SECONDS / BENCH_ROUNDS override the defaults; BENCH_ONLY=inprocess|remote runs one half
 * (BENCH_ONLY=startup or resilience skips this file for bench/startup.bench.ts or
 * bench/resilience.bench.ts).
 */
import autocannon from "autocannon"
import { type ChildProcess, spawn } from "node:child_process"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Context, Effect, Either, Exit, Layer, Redacted, Scope } from "effect"
import * as Host from "../runtime/Host.ts"
import * as Build from "../runtime/release/Build.ts"
import * as Processes from "../runtime/testing/Processes.ts"
import * as Topology from "../runtime/Topology.ts"
import * as RemoteClient from "../runtime/transport/RemoteClient.ts"
import { EchoClient, EchoModule, EchoRpcs, get } from "./Echo.ts"
import { median, promiseLoops } from "./Measure.ts"

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const ONLY = process.env.BENCH_ONLY
if (ONLY !== undefined && ONLY !== "inprocess" && ONLY !== "remote" && ONLY !== "startup" && ONLY !== "resilience" && ONLY !== "orders" && ONLY !== "events") {
  throw new Error(`BENCH_ONLY must be "inprocess", "remote", "startup", "resilience", "orders" or "events", not ${JSON.stringify(ONLY)}`)
}
// The startup and resilience sections are bench/startup.bench.ts and bench/resilience.bench.ts,
// which `npm run bench` runs after this one.
if (ONLY === "startup" || ONLY === "resilience" || ONLY === "orders" || ONLY === "events") process.exit(0)
const WARMUP_SECONDS = 1
/** In process, each round's variants take turns in slices of this many seconds (see `measure`). */
const SLICES = Math.max(1, Math.round(SECONDS / 0.5))
const CONCURRENT = 32
const ID = "p-1"
/** The remote calls carry a service credential, as every call between processes does. */
const SECRET = Redacted.make("bench-secret-bench-secret-bench-secret")

// ---------------------------------------------------------------------------------------------
// Drivers: each runs callers until a deadline and returns calls per second.

/** autocannon against the bare server: one keep-alive connection per caller. */
const cannon = async (url: string, callers: number, seconds: number) => {
  const result = await autocannon({
    url,
    connections: callers,
    pipelining: 1,
    duration: seconds,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: ID })
  })
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`bare server: ${result.errors} errors, ${result.non2xx} non-2xx answers`)
  }
  return result.requests.total / result.duration
}

// ---------------------------------------------------------------------------------------------
// Child processes.

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url))
const children = new Set<ChildProcess>()
const killAll = () => children.forEach((child) => child.kill("SIGKILL"))
process.once("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}

/**
 * Compiles bench/<name>.ts into dist/bench-<name>.mjs as the release is compiled (Build.bundle:
 * one ES module, no `keepNames`), so that the server processes run what users run.
 */
const compile = async (name: string) => {
  const outfile = path.join(Build.dist, `bench-${name}.mjs`)
  await Build.bundle(here(`${name}.ts`), outfile)
  return outfile
}

/** Spawns `node <bundle> ...args` and resolves its URL once `ready` says so. */
const start = async (
  bundle: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  ready: (url: string, output: string) => Promise<boolean>
) => {
  const file = path.basename(bundle)
  const port = await Processes.freePort()
  const url = `http://127.0.0.1:${port}`
  const child = spawn(process.execPath, [bundle, ...args], {
    cwd: here(".."),
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  let output = ""
  child.stdout!.on("data", (chunk) => (output += chunk))
  child.stderr!.on("data", (chunk) => (output += chunk))
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${file} exited with ${child.exitCode}:\n${output}`)
    if (await ready(url, output).catch(() => false)) {
      return {
        url,
        stop: () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve()
            const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
            child.once("exit", () => (clearTimeout(timer), children.delete(child), resolve()))
            child.kill("SIGTERM")
          })
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${file} not ready after 60 s:\n${output}`)
}

// ---------------------------------------------------------------------------------------------
// Measuring.

interface Variant {
  readonly name: string
  readonly run: (seconds: number) => Promise<number>
}

/**
 * Warms each variant up, then runs them back to back in each round. Calls/s by round, by name.
 * With `slices`, a round takes turns in slices of SECONDS / slices (its figure the mean of its
 * slices), so that the variants of a round meet the same load: for in-process calls, whose
 * loops start and stop at no cost; a remote run has connections to open.
 */
const measure = async (label: string, variants: ReadonlyArray<Variant>, slices = 1) => {
  for (const v of variants) await v.run(WARMUP_SECONDS)
  const rounds = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    const sums = new Map<string, number>(variants.map((v) => [v.name, 0]))
    for (let slice = 0; slice < slices; slice++) {
      for (const v of variants) sums.set(v.name, sums.get(v.name)! + (await v.run(SECONDS / slices)))
    }
    for (const v of variants) rounds.get(v.name)!.push(sums.get(v.name)! / slices)
  }
  for (const [name, values] of rounds) {
    console.error(`  ${label.padEnd(28)} ${name.padEnd(22)} rounds: ${values.map(fmt).join(" / ")}`)
  }
  return rounds
}

/**
 * A row from the rounds of our path and of its ceiling: medians of each, and the median of the
 * per-round ratios (each round's pair ran back to back, so this ratio shrugs off load drifting
 * between rounds better than a ratio of medians).
 */
const row = (
  fields: Omit<Row, "ours" | "ceiling" | "ratio">,
  ours: ReadonlyArray<number>,
  ceiling: ReadonlyArray<number>
): Row => ({
  ...fields,
  ours: median(ours),
  ceiling: median(ceiling),
  ratio: median(ours.map((x, i) => (100 * x) / ceiling[i]!))
})

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

interface Row {
  readonly path: string
  readonly mode: string
  readonly ours: number
  readonly how: string
  readonly ceiling: number
  /** Percent of the ceiling. */
  readonly ratio: number
  readonly target: number | undefined
}

const modes = [{ mode: "sequential", callers: 1 }, { mode: `${CONCURRENT} concurrent`, callers: CONCURRENT }] as const

// ---------------------------------------------------------------------------------------------

/** Both ways a process can run: with a span for every call (the default) and without. */
const tracings = [
  { tracing: true, label: "spans on (default)" },
  { tracing: false, label: "TESSERA_RPC_TRACING=false" }
] as const

const inProcess = async (rows: Array<Row>) => {
  // What a process hosting `echo` builds: its topology, its Host, its clients layer.
  const modules = [EchoModule]
  const topology = Either.getOrThrow(Topology.resolve(Host.nodes(modules), { hosted: "echo", peers: "" }))
  const scope = Effect.runSync(Scope.make())
  try {
    const clients = await Promise.all(tracings.map(async ({ tracing }) => {
      // The clients layer is typed loosely (it is assembled from a list known at run time).
      const layer = Host.make(modules, topology, { tracing }).clients as Layer.Layer<EchoClient>
      const client = Context.get(await Effect.runPromise(Layer.build(layer).pipe(Scope.extend(scope))), EchoClient)
      const sample = await Effect.runPromise(client.get({ id: ID }))
      if (sample.id !== ID) throw new Error("in-process client answered the wrong product")
      return client
    }))

    for (const { callers, mode } of modes) {
      const r = await measure(`in process, ${mode}`, [
        { name: "ceiling (handler)", run: (s) => promiseLoops(() => Effect.runPromise(get({ id: ID })), callers, s) },
        ...tracings.map(({ label }, i) => ({
          name: `client, ${label}`,
          run: (s: number) => promiseLoops(() => Effect.runPromise(clients[i]!.get({ id: ID })), callers, s)
        }))
      ], SLICES)
      for (const { label } of tracings) {
        rows.push(row(
          { path: "in process (Host → LocalClient)", mode, how: label, target: 50 },
          r.get(`client, ${label}`)!,
          r.get("ceiling (handler)")!
        ))
      }
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const remote = async (rows: Array<Row>) => {
  const scope = Effect.runSync(Scope.make())
  const servers: Array<{ stop: () => Promise<void> }> = []
  try {
    console.error("compiling bench/server.ts and bench/bare-server.ts into dist/ as the release is compiled ...")
    const [serverBundle, bareBundle] = await Promise.all([compile("server"), compile("bare-server")])
    console.error("starting the bare http server and two `tessera serve` (bench/server.ts), spans on and off ...")
    const ready = async (url: string) => {
      const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) })
      return response.status === 200
    }
    const [bare, ...tesseras] = await Promise.all([
      start(bareBundle, [], {}, async (_, output) => output.includes("listening")),
      ...tracings.map(({ tracing }) =>
        start(serverBundle, ["serve"], {
          TESSERA_MODULES: "all",
          LOG_LEVEL: "warn",
          TESSERA_RPC_TRACING: String(tracing),
          TESSERA_SERVICE_SECRET: Redacted.value(SECRET)
        }, ready)
      )
    ])
    servers.push(bare!, ...tesseras)

    const calls = await Promise.all(tracings.map(async ({ tracing }, i) => {
      const client = await Effect.runPromise(
        RemoteClient.make("echo", EchoRpcs, tesseras[i]!.url, { tracing, secret: SECRET, caller: "bench" }).pipe(Scope.extend(scope))
      )
      // Built per call, as a caller would: the client method's own work is part of the path.
      const call = Effect.suspend(() => client.get({ id: ID }))
      // The socket opens in the background; calls fail fast until it has.
      for (let tries = 0;; tries++) {
        const exit = await Effect.runPromiseExit(call)
        if (Exit.isSuccess(exit) && exit.value.id === ID) break
        if (tries > 50) throw new Error(`remote echo.get never answered: ${String(exit)}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      return call
    }))

    for (const { callers, mode } of modes) {
      const r = await measure(`remote, ${mode}`, [
        { name: "ceiling (bare http)", run: (s) => cannon(bare!.url, callers, s) },
        ...tracings.map(({ label }, i) => ({
          name: `client, ${label}`,
          run: (s: number) => promiseLoops(() => Effect.runPromise(calls[i]!), callers, s)
        }))
      ])
      for (const { label } of tracings) {
        rows.push(row(
          { path: "remote (RemoteClient → serve)", mode, how: label, target: callers === CONCURRENT ? 30 : undefined },
          r.get(`client, ${label}`)!,
          r.get("ceiling (bare http)")!
        ))
      }
    }
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Promise.all(servers.map((s) => s.stop()))
    killAll()
  }
}

const table = (rows: ReadonlyArray<Row>) => {
  const header = ["path", "mode", "calls/s", "ceiling calls/s", "ratio", "target", "met", "how (ours)"]
  const cells = rows.map((row) => [
    row.path,
    row.mode,
    fmt(row.ours),
    fmt(row.ceiling),
    `${row.ratio.toFixed(1)}%`,
    row.target === undefined ? "-" : `>= ${row.target}%`,
    row.target === undefined ? "-" : row.ratio >= row.target ? "yes" : "MISSED",
    row.how
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) => c.map((s, i) => (i >= 2 && i <= 5 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n")
}

const main = async () => {
  const began = Date.now()
  const load = () => os.loadavg()[0]!.toFixed(1)
  console.log(
    `tessera rpc bench: node ${process.version}, ${os.cpus().length} cores, load ${load()}, ${ROUNDS} rounds x ${SECONDS} s (median), warm-up ${WARMUP_SECONDS} s`
  )
  const rows: Array<Row> = []
  if (ONLY !== "remote") await inProcess(rows)
  if (ONLY !== "inprocess") await remote(rows)
  console.log()
  console.log(table(rows))
  console.log(`(load average now ${load()}: other work on this machine lowers every figure; ratios are paired per round)`)
  const judged = rows.filter((r) => r.target !== undefined)
  const missed = judged.filter((r) => r.ratio < r.target!)
  const show = (r: Row) =>
    `${r.path.startsWith("in process") ? "in process" : "remote"} ${r.mode}${r.how.startsWith("spans on") ? "" : " untraced"} ${r.ratio.toFixed(0)}%`
  console.log()
  console.log(
    missed.length === 0
      ? `summary: all ${judged.length} targets met (${judged.map(show).join(", ")}) in ${Math.round((Date.now() - began) / 1000)} s`
      : `summary: ${missed.length} of ${judged.length} targets MISSED (${missed.map(show).join(", ")}); met: ${
        judged.filter((r) => !missed.includes(r)).map(show).join(", ") || "none"
      } (${Math.round((Date.now() - began) / 1000)} s)`
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
