/**
 * The `tessera` command, given the build's modules by the composition root:
 *
 *     tessera serve      run the modules TESSERA_MODULES names (what `npm start` runs)
 *     tessera migrate    apply the hosted modules' migrations, then exit
 *     tessera topology   print which module runs where, and exit
 *     tessera topology check FILE   check a topology file against this build (deploy/topologies)
 *     tessera up FILE    start a topology file's processes on this machine (deploy/Up.ts)
 *     tessera config     print every setting, its value (secrets redacted) and its source
 *     tessera deploy render FILE   write the Containerfile, compose and Kubernetes files of a topology
 *
 * Each but `topology check` and `up` (which read a topology file, not this process's settings)
 * first checks the whole configuration (Settings.ts): a bad value stops it, named. Modules
 * may add commands of their own (payments' `psp-sim`), handed over by the composition root with
 * the modules, so that this file imports no module.
 */
import { Args, Command, Options, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Layer, Option } from "effect"
import * as Database from "./db/Database.ts"
import * as Deploy from "./deploy/DeployCommand.ts"
import * as ModuleFacts from "./deploy/ModuleFacts.ts"
import * as TopologyCheck from "./deploy/TopologyCheck.ts"
import * as Up from "./deploy/Up.ts"
import { EmbeddedPostgres } from "./db/EmbeddedPostgres.ts"
import * as Environment from "./Environment.ts"
import * as Host from "./Host.ts"
import * as JsonLogger from "./observability/JsonLogger.ts"
import type { Module } from "./Module.ts"
import * as Setting from "./Setting.ts"
import * as Settings from "./Settings.ts"
import * as Topology from "./Topology.ts"

/** One line per module: where it runs as seen from this process, and what it calls. */
export const describe = (modules: ReadonlyArray<Module.Any>, topology: Topology.Topology): string => {
  const width = Math.max(...modules.map((m) => m.name.length), Topology.GATEWAY.length) + 2
  const lines = [`${Topology.GATEWAY.padEnd(width)}${topology.gateway ? "here" : "elsewhere"}`]
  for (const m of modules) {
    const location = topology.locations.get(m.name)
    const where = location === undefined
      ? Option.match(Option.fromNullable(topology.peers.get(m.name)), { onNone: () => "not needed here", onSome: Topology.show })
      : location._tag === "Local" ? "here" : Topology.show(location.peer)
    const calls = m.calls.length > 0 ? `  (calls ${m.calls.map((c) => c.module).join(", ")})` : ""
    lines.push(`${m.name.padEnd(width)}${where}${calls}`)
  }
  return lines.join("\n")
}

/** A command a module adds to `tessera` (it needs nothing the CLI does not provide). */
export type Extra = Command.Command<any, never, any, any>

export const command = (modules: ReadonlyArray<Module.Any>, extra: ReadonlyArray<Extra> = []) => {
  const settings = Settings.registry(modules)
  const check = Setting.check(settings, Settings.rules)
  const topology = Effect.zipRight(check, Topology.fromConfig(Host.nodes(modules)))

  const serve = Command.make("serve", {}, () =>
    Effect.gen(function*() {
      const resolved = yield* topology
      yield* Effect.logInfo(`starting ${[...(resolved.gateway ? [Topology.GATEWAY] : []), ...resolved.hosted].join(", ")}`)
      return yield* Layer.launch(Host.serve(modules, resolved))
    })).pipe(Command.withDescription("Serve the modules TESSERA_MODULES names, on PORT"))

  const migrate = Command.make("migrate", {}, () =>
    Effect.gen(function*() {
      const resolved = yield* topology
      const embedded = yield* Host.needsEmbedded(modules, resolved)
      const withData = Host.withData(modules, resolved)
      const migrateAll = Effect.forEach(
        modules.filter((m) => withData.includes(m.name)),
        (module) => Database.open(module.name, { runtime: Host.runtimeTables(module) }),
        { discard: true }
      ).pipe(Effect.scoped)
      yield* (embedded ? Effect.provide(migrateAll, EmbeddedPostgres.layer) : (migrateAll as Effect.Effect<void, unknown>))
      yield* Console.log(`migrated: ${withData.join(", ")}`)
    })).pipe(Command.withDescription("Apply the migrations of the modules TESSERA_MODULES names"))

  const facts = ModuleFacts.fromModules(modules)
  const topologyFile = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a topology file (deploy/topologies/*.json)"))

  const checkFile = Command.make("check", { file: topologyFile }, ({ file }) =>
    Effect.flatMap(TopologyCheck.load(file, facts), (loaded) => Console.log(TopologyCheck.summary(file, loaded, facts)))).pipe(
      Command.withDescription("Check a topology file against this build: every reason it cannot work, one line each"),
      Command.provide(NodeContext.layer)
    )

  const show = Command.make("topology", {}, () =>
    Effect.flatMap(topology, (resolved) => Console.log(describe(modules, resolved)))).pipe(
      Command.withDescription("Print which module runs where (TESSERA_MODULES, TESSERA_PEERS)"),
      Command.withSubcommands([checkFile])
    )

  const up = Command.make("up", {
    file: topologyFile,
    portBase: Options.integer("port-base").pipe(
      Options.withDefault(Up.DEFAULT_PORT_BASE),
      Options.withDescription("the port of the file's first instance; the others follow in file order")
    ),
    release: Options.file("release").pipe(Options.optional, Options.withDescription("the release to run (default dist/tessera.mjs)"))
  }, (options) => Up.run(facts, options)).pipe(
    Command.withDescription("Start a topology file's processes here: prefixed logs, stopped together on SIGINT/SIGTERM"),
    Command.provide(NodeContext.layer)
  )

  const config = Command.make("config", {}, () =>
    Effect.gen(function*() {
      yield* Console.log(Setting.table(yield* Setting.report(settings)))
      yield* check
    })).pipe(Command.withDescription("Print every setting, its value (secrets redacted) and where it came from"))

  return Command.make("tessera").pipe(
    Command.withSubcommands([serve, migrate, show, up, config, Deploy.command(modules), ...extra] as [Extra, ...Array<Extra>])
  )
}

/** What went wrong, in one line: the first failure's message (a startup error names its cause). */
const summary = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/**
 * Runs the CLI on `process.argv` until it finishes or the process is signalled, configured by
 * the environment (an empty variable counts as unset: `Environment.ts`). A failure is logged
 * once, as a fatal JSON line, and the process exits with 1.
 */
export const main = (modules: ReadonlyArray<Module.Any>, extra: ReadonlyArray<Extra> = []) =>
  Command.run(command(modules, extra), { name: "tessera", version: "0.1.0" })(process.argv).pipe(
    Effect.tapErrorCause((cause) => {
      const error = Cause.squash(cause)
      // @effect/cli has printed what is wrong with the command line.
      return Cause.isInterruptedOnly(cause) || ValidationError.isValidationError(error)
        ? Effect.void
        // A refused topology file: its reasons, one line each, are the whole answer.
        : error instanceof TopologyCheck.TopologyRefused
        ? Effect.forEach(error.problems, (problem) => Console.error(`${error.file}: ${problem}`))
        // A refused configuration (or topology file) says all there is in its message: its stack would be noise.
        : error instanceof Setting.InvalidConfiguration
        ? Effect.logFatal(`tessera stopped: ${summary(cause)}`)
        : Effect.logFatal(`tessera stopped: ${summary(cause)}`, cause)
    }),
    Effect.withConfigProvider(Environment.configProvider()),
    Effect.provide(NodeContext.layer),
    Effect.provide(JsonLogger.layer),
    NodeRuntime.runMain({ disablePrettyLogger: true, disableErrorReporting: true })
  )
