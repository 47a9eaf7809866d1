/**
 * `tessera up FILE`: a topology file started on this machine, every instance a process of the
 * built release (Node: `node dist/tessera.mjs serve`, or the single executable itself when `up`
 * runs from it; Deno: `deno run <start:deno's flags> dist/tessera.mjs serve`), all at once (processes cope with any start order: Startup.ts).
 *
 * Each instance gets the environment `Environments.ofTopology` derives with local addressing:
 * instance `i` of the file listens on `--port-base + i`; `DATABASE_URL` (an admin URL) holds
 * every module's schema, and a module in `ownDatabase` gets a database of its own beside it on
 * the same server (`<database>_<module>`, created when missing); `AMQP_URL` is the broker. The
 * rest of this process's environment is passed on (`TESSERA_ADMIN_EMAIL`, `LOG_LEVEL`, ...); a
 * split topology without `TESSERA_SERVICE_SECRET` gets a random one for the run.
 *
 * Every line an instance prints is shown prefixed with its name (`inventory.1`), coloured on a
 * terminal. SIGINT or SIGTERM stops every instance (SIGTERM, then SIGKILL after a grace) and
 * exits 0; an instance that exits by itself stops the others and fails, naming it.
 */
import { Command as ChildProcess, FileSystem, Path } from "@effect/platform"
import type { CommandExecutor } from "@effect/platform"
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Console, Data, Duration, Effect, Option, Redacted, Schedule, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as Settings from "../Settings.ts"
import * as SingleExecutable from "../SingleExecutable.ts"
import * as Topology from "../Topology.ts"
import * as Environments from "./Environments.ts"
import type { ModuleFacts } from "./ModuleFacts.ts"
import * as TopologyCheck from "./TopologyCheck.ts"

/** The permissions the release runs with on Deno: package.json's `start:deno` (a test keeps the two equal). */
export const DENO_FLAGS: ReadonlyArray<string> = [
  "--no-prompt",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys=hostname"
]

export const DEFAULT_PORT_BASE = 8100

/** How long an instance may take to stop after SIGTERM before it is killed. */
const STOP_GRACE = Duration.seconds(20)

export class UpFailed extends Data.TaggedError("UpFailed")<{ readonly message: string }> {}

export interface Options {
  readonly file: string
  readonly portBase: number
  /** The release to run (default: this one when run from it, else `dist/tessera.mjs`). */
  readonly release: Option.Option<string>
}

/** A name's colour on a terminal: ANSI foreground codes, one per instance in turn. */
const COLOURS = [36, 33, 35, 32, 34, 96, 93, 95, 92, 94, 91, 31]

const colourful = () =>
  process.env.NO_COLOR === undefined && (process.env.FORCE_COLOR !== undefined || process.stdout.isTTY === true)

/** The release to run: `--release`, this release when `tessera up` runs from it, else `dist/tessera.mjs` here. */
const releaseOf = (options: Options) =>
  Effect.gen(function*() {
    const path = yield* Path.Path
    const fs = yield* FileSystem.FileSystem
    const running = process.argv[1]
    const release = Option.getOrElse(
      options.release,
      () => running !== undefined && path.basename(running) === "tessera.mjs" ? running : path.join("dist", "tessera.mjs")
    )
    const absolute = path.resolve(release)
    if (!(yield* Effect.orElseSucceed(fs.exists(absolute), () => false))) {
      return yield* new UpFailed({ message: `no release at ${absolute}: build it first (npm run build), or name one with --release` })
    }
    return absolute
  })

/** Deno: the one npm installed beside the project (`node_modules/.bin/deno`), else `deno` on the PATH. */
const denoOf = Effect.gen(function*() {
  const path = yield* Path.Path
  const fs = yield* FileSystem.FileSystem
  const local = path.resolve("node_modules", ".bin", "deno")
  return (yield* Effect.orElseSucceed(fs.exists(local), () => false)) ? local : "deno"
})

/** A required URL of the environment, or a failure saying why the topology needs it. */
const required = (setting: typeof Settings.databaseUrl, why: string) =>
  Effect.flatMap(Effect.mapError(setting.config, (error) => new UpFailed({ message: String(error) })), (value) =>
    Option.match(value, {
      onNone: () => Effect.fail(new UpFailed({ message: `${why}: set ${setting.name}` })),
      onSome: (url) => Effect.succeed(Redacted.value(url))
    }))

/** Creates the database of `url` on its server (through `adminUrl`) unless it exists. */
const ensureDatabase = (adminUrl: string, url: string) =>
  Effect.scoped(
    Effect.gen(function*() {
      const name = decodeURIComponent(new URL(url).pathname.slice(1))
      const sql = yield* PgClient.make({ url: Redacted.make(adminUrl), maxConnections: 1, applicationName: "tessera/up" })
      const found = yield* sql`SELECT 1 FROM pg_database WHERE datname = ${name}`
      if (found.length > 0) return false
      yield* sql.unsafe(`CREATE DATABASE "${name.replace(/"/g, "\"\"")}"`).pipe(
        // Another `up` made it meanwhile.
        Effect.catchIf((error) => String(error.cause).includes("already exists"), () => Effect.void)
      )
      return true
    })
  ).pipe(
    Effect.provide(Reactivity.layer),
    Effect.mapError((error) => new UpFailed({ message: `cannot create the database of ${new URL(url).pathname.slice(1)}: ${error.message}` }))
  )

interface Started {
  readonly instance: Environments.InstanceEnvironment
  readonly process: CommandExecutor.Process
}

/** Whether an instance answers `/health/ready` with 200. */
const ready = (port: number) =>
  Effect.tryPromise(() => fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2_000) })).pipe(
    Effect.map((response) => response.status === 200),
    Effect.orElseSucceed(() => false)
  )

/** Starts the topology at `options.file` and runs until signalled, or until an instance exits. */
export const run = (modules: ReadonlyArray<ModuleFacts>, options: Options) =>
  Effect.scoped(Effect.gen(function*() {
    const file = yield* TopologyCheck.load(options.file, modules)
    // Looked for only when an instance needs it (the single executable runs itself on Node).
    const release = yield* Effect.cached(releaseOf(options))
    const deno = yield* denoOf
    const databaseUrl = file.database === "postgres"
      ? yield* required(Settings.databaseUrl, `${file.name} keeps its data on PostgreSQL (database "postgres")`)
      : ""
    const amqpUrl = file.broker === "rabbitmq"
      ? yield* required(Settings.amqpUrl, `${file.name} carries events through RabbitMQ (broker "rabbitmq")`)
      : ""
    const addressing = Environments.local({ portBase: options.portBase, databaseUrl, amqpUrl })
    const environments = Environments.ofTopology(file, modules, addressing)

    const say = (line: string) => Console.log(colourful() ? `\x1b[1mup\x1b[0m ${line}` : `up ${line}`)
    for (const module of file.ownDatabase) {
      const own = addressing.ownDatabaseUrl(module)
      if (yield* ensureDatabase(databaseUrl, own)) yield* say(`created ${module}'s database ${new URL(own).pathname.slice(1)}`)
    }
    const secret = Option.isSome(yield* Effect.orElseSucceed(Settings.serviceSecret.config, () => Option.none()))
      ? {}
      : environments.length > 1
      ? { [Settings.serviceSecret.name]: randomBytes(48).toString("base64") }
      : {}
    if (Settings.serviceSecret.name in secret) yield* say(`${Settings.serviceSecret.name} is not set: its instances share a random one for this run`)

    // Variables the topology decides are cleared first (empty counts as unset), so none leaks in from here.
    const cleared = Object.fromEntries(Environments.variables(modules).map((name) => [name, ""]))
    const width = Math.max(...environments.map((i) => i.name.length))
    const colour = colourful()
    const prefix = (instance: Environments.InstanceEnvironment) => {
      const label = instance.name.padEnd(width)
      return colour ? `\x1b[${COLOURS[instance.index % COLOURS.length]}m${label} |\x1b[0m ` : `${label} | `
    }

    const started = yield* Effect.forEach(environments, (instance) =>
      Effect.gen(function*() {
        // The single executable runs itself; Deno always runs the release.
        const [command, ...args] = instance.runtime === "deno"
          ? [deno, "run", ...DENO_FLAGS, yield* release, "serve"]
          : SingleExecutable.isSingleExecutable
          ? [process.execPath, "serve"]
          : [process.execPath, yield* release, "serve"]
        const child = yield* ChildProcess.make(command!, ...args).pipe(
          ChildProcess.env({ ...cleared, ...secret, ...instance.env }),
          ChildProcess.start,
          Effect.mapError((error) => new UpFailed({ message: `cannot start ${instance.name}: ${error.message}` }))
        )
        const lines = (stream: Stream.Stream<Uint8Array, unknown>) =>
          stream.pipe(Stream.decodeText(), Stream.splitLines, Stream.runForEach((line) => Console.log(prefix(instance) + line)), Effect.ignore)
        yield* Effect.forkScoped(Effect.all([lines(child.stdout), lines(child.stderr)], { concurrency: 2, discard: true }))
        yield* say(`${instance.name}: ${instance.runtime}, port ${instance.port}, hosting ${instance.hosts.join(", ")}`)
        return { instance, process: child } satisfies Started
      }), { concurrency: "unbounded" })

    // On the way out, every instance at once: SIGTERM, SIGKILL once the grace is over.
    // One that stopped badly (killed, or exiting with an error) is named.
    yield* Effect.addFinalizer(() =>
      Effect.forEach(started, ({ instance, process: child }) =>
        Effect.gen(function*() {
          if (!(yield* child.isRunning)) return
          yield* child.kill("SIGTERM").pipe(
            Effect.timeout(STOP_GRACE),
            Effect.catchAll(() => Effect.ignore(child.kill("SIGKILL")))
          )
          const code = yield* Effect.either(child.exitCode)
          if (code._tag === "Left" || code.right !== 0) {
            yield* say(`${instance.name} stopped badly (${code._tag === "Left" ? code.left.message : `exit code ${code.right}`})`)
          }
        }).pipe(Effect.ignore), { concurrency: "unbounded", discard: true }).pipe(
          Effect.zipRight(say(`stopped ${started.length} instance(s)`))
        )
    )

    const gateways = environments.filter((i) => i.hosts.includes(Topology.GATEWAY))
    const whenReady = Effect.gen(function*() {
      yield* Effect.forEach(started, ({ instance }) =>
        ready(instance.port).pipe(
          Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced("300 millis") }),
          Effect.zipRight(say(`${instance.name} ready on http://127.0.0.1:${instance.port}`))
        ), { concurrency: "unbounded", discard: true })
      yield* say(`${file.name}: all ${started.length} instance(s) ready; the REST API on ${
        gateways.map((i) => `http://127.0.0.1:${i.port}`).join(", ")
      }`)
    })
    yield* Effect.forkScoped(whenReady)

    const [instance, code] = yield* Effect.raceAll(started.map(({ instance, process: child }) =>
      child.exitCode.pipe(
        Effect.map((code) => [instance, String(code)] as const),
        Effect.catchAll((error) => Effect.succeed([instance, error.message] as const))
      )
    ))
    return yield* new UpFailed({ message: `${instance.name} exited (${code}): stopping the others` })
  }))
