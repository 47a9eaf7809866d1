/**
 * `npm run bench`, startup section: how fast the built release becomes ready and how much memory
 * it holds at idle, each figure beside its target (issue 10, "Small and quick to start").
 *
 * - embedded all-in-one (`tessera serve`, every module, PGlite in a new TESSERA_DATA_DIR), on Node
 *   and on Deno: ready (GET /health/ready = 200) on the first boot <= 5 s and on a later boot of
 *   the same data directory <= 2 s; resident memory at idle <= 350 MB;
 * - one module process on PostgreSQL (catalog, a new database): ready <= 1.5 s, resident memory at
 *   idle <= 120 MB;
 * - the single executable (`npm run build:exe`, built when stale), alone in a new folder: ready on
 *   a later boot <= 1.5 s (its first boot runs initdb: it carries no data directory template);
 *   resident memory at idle, beside the embedded target.
 *
 * Ready is timed from the spawn to the first 200, polled every 25 ms. Resident memory is the sum
 * of VmRSS over the process and its descendants (Linux /proc), read after IDLE seconds without
 * requests. The CPU seconds the process spent until ready are printed too: on this shared machine
 * other work stretches the wall clock, not the CPU time. Each figure is the median of
 * BENCH_ROUNDS (3) boots. A report, not a test: it exits 0 when a target is missed and says MISSED.
 * BENCH_ONLY=startup runs this section alone (`npm run bench` runs bench/rpc.bench.ts first).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Build from "../runtime/release/Build.ts"
import * as Processes from "../runtime/testing/Processes.ts"
import * as Services from "../runtime/testing/Services.ts"
import { median } from "./Measure.ts"

const ONLY = process.env.BENCH_ONLY
if (ONLY !== undefined && ONLY !== "inprocess" && ONLY !== "remote" && ONLY !== "startup" && ONLY !== "resilience" && ONLY !== "orders" && ONLY !== "events") {
  throw new Error(`BENCH_ONLY must be "inprocess", "remote", "startup", "resilience", "orders" or "events", not ${JSON.stringify(ONLY)}`)
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
/** Seconds a process is left alone after it is ready, before its memory is read. */
const IDLE = Number(process.env.BENCH_IDLE_SECONDS ?? 5)
const SECRET = "bench-secret-bench-secret-bench-secret"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The pids of `pid` and of all its descendants, from /proc. */
const tree = (pid: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // The command name (field 2) may hold spaces: the parent pid is the 2nd field after its ")".
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)])
    } catch {
      // gone meanwhile
    }
  }
  const all = [pid]
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i]!) ?? []))
  return all
}

/** Resident memory of the process tree, in MB. */
const residentMB = (pid: number) =>
  tree(pid).reduce((sum, p) => {
    try {
      const kb = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, "utf8"))?.[1]
      return sum + Number(kb ?? 0) / 1024
    } catch {
      return sum
    }
  }, 0)

const TICKS = 100 // USER_HZ on Linux

/** CPU seconds (user + system) the process tree has spent so far. */
const cpuSeconds = (pid: number) =>
  tree(pid).reduce((sum, p) => {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return sum + (Number(fields[11]) + Number(fields[12])) / TICKS
    } catch {
      return sum
    }
  }, 0)

interface Boot {
  readonly readyMs: number
  readonly cpu: number
  readonly rssMB: number
}

/**
 * Starts `tessera serve` with `env` (on `runtime`, or the single executable in its folder), times
 * it to ready, reads its memory at idle, stops it.
 */
const boot = async (runtime: Processes.Runtime | { readonly executable: string }, env: Record<string, string>): Promise<Boot> => {
  const port = await Processes.freePort()
  const started = performance.now()
  const server = typeof runtime === "string"
    ? Processes.spawnServer(port, env, runtime)
    : Processes.spawnProgram(runtime.executable, ["serve"], { ...env, PORT: String(port) }, { cwd: path.dirname(runtime.executable), port })
  try {
    for (;;) {
      if (server.process.exitCode !== null) {
        throw new Error(`tessera serve exited with ${server.process.exitCode}:\n${server.output()}`)
      }
      if (performance.now() - started > 120_000) throw new Error(`not ready after 120 s:\n${server.output()}`)
      const ok = await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then(
        (response) => response.status === 200,
        () => false
      )
      if (ok) break
      await sleep(25)
    }
    const readyMs = performance.now() - started
    const cpu = cpuSeconds(server.process.pid!)
    await sleep(IDLE * 1000)
    return { readyMs, cpu, rssMB: residentMB(server.process.pid!) }
  } finally {
    await server.stop()
  }
}

interface Row {
  readonly what: string
  readonly figure: string
  readonly value: number
  readonly unit: "s" | "MB"
  readonly target: number
  readonly cpu?: number
}

/** First and later boots of the embedded all-in-one on `runtime`, each in a new data directory. */
const embedded = async (runtime: Processes.Runtime, rows: Array<Row>) => {
  const first: Array<Boot> = []
  const later: Array<Boot> = []
  for (let round = 0; round < ROUNDS; round++) {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-bench-"))
    try {
      const env = { TESSERA_MODULES: "all", TESSERA_DATA_DIR: dataDir }
      first.push(await boot(runtime, env))
      later.push(await boot(runtime, env))
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
    console.error(`  embedded on ${runtime}, round ${round + 1}: first ${show(first.at(-1)!)}; later ${show(later.at(-1)!)}`)
  }
  const what = `embedded all-in-one, ${runtime}`
  rows.push(
    { what, figure: "ready, first boot", ...readyOf(first), unit: "s", target: 5 },
    { what, figure: "ready, later boot", ...readyOf(later), unit: "s", target: 2 },
    { what, figure: "resident at idle, first boot", value: median(first.map((b) => b.rssMB)), unit: "MB", target: 350 },
    { what, figure: "resident at idle, later boot", value: median(later.map((b) => b.rssMB)), unit: "MB", target: 350 }
  )
}

/**
 * The single executable (`npm run build:exe`, built here when stale), copied alone into a new
 * folder as a shop would run it: later boots of the data directory its first boot made there.
 */
const executable = async (rows: Array<Row>) => {
  if (process.platform !== "linux") {
    console.error(`  single executable: skipped (built for Linux only, this is ${process.platform})`)
    return
  }
  await Build.buildExecutable({ ifStale: true })
  const later: Array<Boot> = []
  for (let round = 0; round < ROUNDS; round++) {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-bench-exe-"))
    try {
      const copy = path.join(folder, "tessera")
      fs.copyFileSync(Build.executable, copy)
      fs.chmodSync(copy, 0o755)
      const first = await boot({ executable: copy }, {})
      later.push(await boot({ executable: copy }, {}))
      console.error(`  single executable, round ${round + 1}: first ${show(first)}; later ${show(later.at(-1)!)}`)
    } finally {
      fs.rmSync(folder, { recursive: true, force: true })
    }
  }
  const what = "single executable (dist/tessera)"
  rows.push(
    { what, figure: "ready, later boot", ...readyOf(later), unit: "s", target: 1.5 },
    { what, figure: "resident at idle, later boot", value: median(later.map((b) => b.rssMB)), unit: "MB", target: 350 }
  )
}

/** One catalog process on a new PostgreSQL database. */
const onPostgres = async (rows: Array<Row>) => {
  const postgres = await Services.findPostgres()
  if (!postgres.ok) {
    console.error(`  one module on PostgreSQL: skipped (${postgres.reason})`)
    return
  }
  const boots: Array<Boot> = []
  for (let round = 0; round < ROUNDS; round++) {
    const database = await Services.createDatabase(postgres.value)
    try {
      boots.push(
        await boot("node", {
          TESSERA_MODULES: "catalog",
          DATABASE_URL: database.url,
          TESSERA_SERVICE_SECRET: SECRET,
          // catalog calls identity; nothing needs to answer there for catalog to become ready.
          TESSERA_PEERS: "identity=http://127.0.0.1:9"
        })
      )
    } finally {
      await database.drop()
    }
    console.error(`  catalog on PostgreSQL, round ${round + 1}: ${show(boots.at(-1)!)}`)
  }
  const what = "one module (catalog) on PostgreSQL, node"
  rows.push(
    { what, figure: "ready", ...readyOf(boots), unit: "s", target: 1.5 },
    { what, figure: "resident at idle", value: median(boots.map((b) => b.rssMB)), unit: "MB", target: 120 }
  )
}

const readyOf = (boots: ReadonlyArray<Boot>) => ({
  value: median(boots.map((b) => b.readyMs / 1000)),
  cpu: median(boots.map((b) => b.cpu))
})

const show = (b: Boot) => `ready ${(b.readyMs / 1000).toFixed(2)} s (cpu ${b.cpu.toFixed(2)} s), ${Math.round(b.rssMB)} MB`

const table = (rows: ReadonlyArray<Row>) => {
  const header = ["process", "figure", "value", "target", "met", "cpu s until ready"]
  const cells = rows.map((row) => [
    row.what,
    row.figure,
    row.unit === "s" ? `${row.value.toFixed(2)} s` : `${Math.round(row.value)} MB`,
    `<= ${row.target} ${row.unit}`,
    row.value <= row.target ? "yes" : "MISSED",
    row.cpu === undefined ? "-" : row.cpu.toFixed(2)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) => c.map((s, i) => (i === 2 || i === 3 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n")
}

const main = async () => {
  if (ONLY === "inprocess" || ONLY === "remote" || ONLY === "resilience" || ONLY === "orders" || ONLY === "events") return
  const began = Date.now()
  const load = () => os.loadavg()[0]!.toFixed(1)
  if (!Build.isFresh()) {
    console.error("building the release (dist/) ...")
    await Build.build()
  }
  console.log(
    `tessera startup bench: the release (dist/tessera.mjs), node ${process.version}, ${os.cpus().length} cores, load ${load()}, median of ${ROUNDS} boots, memory read after ${IDLE} s idle`
  )
  const rows: Array<Row> = []
  await embedded("node", rows)
  await embedded("deno", rows)
  await onPostgres(rows)
  await executable(rows)
  console.log()
  console.log(table(rows))
  console.log(`(load average now ${load()}: other work on this machine stretches the ready times; the CPU seconds do not stretch)`)
  const missed = rows.filter((r) => r.value > r.target)
  console.log()
  console.log(
    missed.length === 0
      ? `summary: all ${rows.length} startup targets met in ${Math.round((Date.now() - began) / 1000)} s`
      : `summary: ${missed.length} of ${rows.length} startup targets MISSED (${
        missed.map((r) => `${r.what}: ${r.figure}`).join("; ")
      }) (${Math.round((Date.now() - began) / 1000)} s)`
  )
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
