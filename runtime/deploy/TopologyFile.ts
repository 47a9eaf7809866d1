/**
 * A topology as a file (`deploy/topologies/*.json`): which processes run, which modules each
 * hosts, on which runtime and how many replicas, which modules get a database of their own, and
 * which broker carries events. `tessera topology check` refuses one that cannot work,
 * `tessera up` starts one locally, and `tessera deploy render` writes compose and Kubernetes
 * files for it. A process reads nothing of this file at run time: it still learns where it
 * stands from its environment (`TESSERA_MODULES`, `TESSERA_PEERS`, ...), which the tools derive
 * from the file, so one image serves every topology.
 */
import { Effect, ParseResult, Schema } from "effect"

/** A name usable as a process name, a compose service and a Kubernetes object: a DNS label. */
export const ProcessName = Schema.String.pipe(
  Schema.pattern(/^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$/),
  Schema.annotations({
    description: "a DNS label: lower-case letters, digits and '-', starting with a letter, at most 40 characters"
  })
)

/** One kind of process: the modules it hosts (`gateway` serves the public REST API). */
export class Process extends Schema.Class<Process>("Process")({
  name: ProcessName,
  /** Module names as in `TESSERA_MODULES`; `gateway` is one of them. */
  modules: Schema.NonEmptyArray(Schema.String),
  /** The runtime the process runs on: the same release on Node or on Deno. */
  runtime: Schema.optionalWith(Schema.Literal("node", "deno"), { default: () => "node" as const }),
  /** How many instances run; each is a peer of the others (`TESSERA_PEERS name=a|b`). */
  replicas: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 64)), { default: () => 1 })
}) {}

/** A whole deployment. */
export class TopologyFile extends Schema.Class<TopologyFile>("TopologyFile")({
  name: ProcessName,
  description: Schema.String,
  /**
   * `postgres`: one PostgreSQL server (`DATABASE_URL`), each module in its own schema;
   * `embedded`: PGlite inside the one process (a single process only).
   */
  database: Schema.Literal("postgres", "embedded"),
  /** Modules given a database of their own (`TESSERA_<MODULE>_DATABASE_URL`). */
  ownDatabase: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  /** `rabbitmq` (`AMQP_URL`) or `in-process` (publisher and subscribers in one process). */
  broker: Schema.Literal("rabbitmq", "in-process"),
  processes: Schema.NonEmptyArray(Process)
}) {}

export class TopologyFileInvalid extends Schema.TaggedError<TopologyFileInvalid>()("TopologyFileInvalid", {
  file: Schema.String,
  message: Schema.String
}) {}

/** Parses a topology file's text, naming the file and the first problem. */
export const decode = (file: string, text: string): Effect.Effect<TopologyFile, TopologyFileInvalid> =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (error) => new TopologyFileInvalid({ file, message: `not JSON: ${(error as Error).message}` })
  }).pipe(
    Effect.flatMap(Schema.decodeUnknown(TopologyFile, { onExcessProperty: "error", errors: "all" })),
    Effect.catchTag("ParseError", (error) =>
      Effect.fail(
        new TopologyFileInvalid({
          file,
          // One line: the first issue at each place, with where it is (`processes.0.replicas: ...`);
          // an optional field's "Expected undefined" after its real issue says nothing more.
          message: [
            ...new Map(
              ParseResult.ArrayFormatter.formatErrorSync(error).reverse().map((issue) =>
                [issue.path.join("."), `${issue.path.length > 0 ? `${issue.path.join(".")}: ` : ""}${issue.message}`] as const
              )
            ).values()
          ].reverse().join("; ")
        })
      ))
  )
