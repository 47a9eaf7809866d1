/**
 * Starts `tessera` processes of the built release (`dist/tessera.mjs`, built before the tests by
 * `release.globalSetup.ts`) for end-to-end tests, on Node or on Deno, and stops them.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

export interface Server {
  readonly url: string
  readonly port: number
  readonly process: ChildProcess
  /** Everything the process printed so far. */
  readonly output: () => string
  /** Resolves the exit code when the process exits. */
  readonly exited: Promise<number | null>
  /** SIGTERM, then wait for the exit; resolves the exit code. */
  readonly stop: () => Promise<number | null>
}

/** Whether `port` can be listened on at 127.0.0.1 right now (listened on, then closed). */
const isFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/**
 * The lowest port the system hands to outgoing connections (Linux's `ip_local_port_range`; the
 * usual floor elsewhere). A port the system picks for a listener comes from that range too, so
 * between the moment it is free and the moment a server listens on it, an outgoing connection of
 * any process (to PostgreSQL, to RabbitMQ, between modules) may take it: seen as EADDRINUSE.
 */
const EPHEMERAL_FLOOR = (() => {
  try {
    const floor = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    return Number.isInteger(floor) && floor > 20_000 ? floor : 32_768
  } catch {
    return 32_768
  }
})()
const LOWEST = 10_000
/** Ports this process handed out, not handed out again. */
const handedOut = new Set<number>()

/**
 * The first of `count` consecutive ports nothing listens on right now (for a topology whose
 * instances listen on a base port and the ones after it), from below the system's range for
 * outgoing connections (so no connection takes them before their servers listen), none of them
 * one this process handed out before.
 */
export const freePorts = async (count: number): Promise<number> => {
  const range = Array.from({ length: count }, (_, i) => i)
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = LOWEST + Math.floor(Math.random() * (EPHEMERAL_FLOOR - LOWEST - count))
    if (range.some((i) => handedOut.has(base + i))) continue
    if ((await Promise.all(range.map((i) => isFree(base + i)))).every(Boolean)) {
      for (const i of range) handedOut.add(base + i)
      return base
    }
  }
  throw new Error(`no ${count} consecutive free ports below ${EPHEMERAL_FLOOR}`)
}

/** A port nothing listens on right now (see `freePorts`). */
export const freePort = () => freePorts(1)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** What runs the release. */
export type Runtime = "node" | "deno"

/**
 * The runtime of processes a test does not pin: `TESSERA_TEST_RUNTIME` (`node` or `deno`,
 * default `node`), so that the end-to-end suites run on either (`TESSERA_TEST_RUNTIME=deno npx
 * vitest run main.abort.test.ts`).
 */
export const RUNTIME: Runtime = (() => {
  const value = process.env.TESSERA_TEST_RUNTIME
  if (value === undefined || value === "" || value === "node" || value === "deno") return value === "deno" ? "deno" : "node"
  throw new Error(`TESSERA_TEST_RUNTIME must be node or deno, not ${JSON.stringify(value)}`)
})()

export const RELEASE = path.join(root, "dist", "tessera.mjs")

/**
 * The flags `npm run start:deno` gives Deno (its permissions), read from package.json: the tests
 * run the release with exactly the permissions users give it. Read when asked, not on import:
 * the compiled toy hosts (ToyHosts.ts) carry this file where no package.json lies.
 */
export const denoFlags = (): ReadonlyArray<string> => {
  const scripts = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts as Record<string, string>
  const flags = /^(?:exec )?deno run (.*) dist\/tessera\.mjs serve$/.exec(scripts["start:deno"] ?? "")?.[1]
  if (flags === undefined) throw new Error(`package.json's start:deno is not "[exec ]deno run <flags> dist/tessera.mjs serve"`)
  return flags.split(/\s+/)
}

/** Flags for Node in front of the release (`TESSERA_TEST_NODE_FLAGS`, e.g. `--cpu-prof` to profile a bench's servers). */
export const nodeFlags = () => (process.env.TESSERA_TEST_NODE_FLAGS ?? "").split(/\s+/).filter((flag) => flag !== "")

/** The command line that runs the release's `tessera <args>` on `runtime`. */
export const commandLine = (runtime: Runtime, args: ReadonlyArray<string>): [string, Array<string>] =>
  runtime === "node"
    ? [process.execPath, [...nodeFlags(), RELEASE, ...args]]
    : [path.join(root, "node_modules", ".bin", "deno"), ["run", ...denoFlags(), RELEASE, ...args]]

/** Spawns `tessera serve` with `env` on `port`, without waiting for it. */
export const spawnServer = (port: number, env: Record<string, string | undefined>, runtime: Runtime = RUNTIME): Server =>
  spawnCommand(["serve"], { ...env, PORT: String(port) }, port, runtime)

/** Spawns `tessera <args>` with `env`. */
export const spawnCommand = (
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  port = 0,
  runtime: Runtime = RUNTIME
): Server => {
  const [command, argv] = commandLine(runtime, args)
  return spawnProgram(command, argv, env, { port, cwd: root })
}

/** Spawns `command` with `args` and `env` in `cwd` (the single executable is run this way). */
export const spawnProgram = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  { cwd, port = 0 }: { readonly cwd: string; readonly port?: number }
): Server => {
  let output = ""
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  child.stdout!.on("data", (chunk) => (output += chunk))
  child.stderr!.on("data", (chunk) => (output += chunk))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  // A test runner that dies takes its servers with it.
  const orphanGuard = () => child.kill("SIGKILL")
  process.once("exit", orphanGuard)
  void exited.then(() => process.off("exit", orphanGuard))
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    process: child,
    output: () => output,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000)
      const code = await exited
      clearTimeout(timer)
      return code
    }
  }
}

/** Waits until `GET /health/ready` answers 200, or fails with the process's output. */
export const waitReady = async (server: Server, timeoutMs = 90_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (server.process.exitCode !== null) {
      throw new Error(`server on ${server.port} exited with ${server.process.exitCode}:\n${server.output()}`)
    }
    try {
      const response = await fetch(`${server.url}/health/ready`, { signal: AbortSignal.timeout(3_000) })
      if (response.status === 200) return
    } catch {
      // not listening yet
    }
    await sleep(200)
  }
  throw new Error(`server on ${server.port} not ready after ${timeoutMs} ms:\n${server.output()}`)
}

/** Waits until every one of `servers` is ready; if one never is, stops them all and fails with its reason. */
export const waitAllReady = async (servers: ReadonlyArray<Server>) => {
  try {
    await Promise.all(servers.map((server) => waitReady(server)))
  } catch (error) {
    await Promise.all(servers.map((server) => server.stop()))
    throw error
  }
}
