/**
 * The workflow engine of a module that declares workflows (`Module.workflows`): @effect/cluster's
 * `ClusterWorkflowEngine` on a runner of its own over the module's own SQL client, so that its
 * tables (`cluster_messages`, `cluster_replies`, `cluster_runners`) live in the module's schema,
 * owned by its role, on PostgreSQL or on the embedded database.
 *
 * Several instances of one module on one database share the work through the cluster's own
 * runner and shard storage (`SqlRunnerStorage`), with no lease of ours:
 *
 * - every instance registers a runner (its address: this host and its HTTP port, so that an
 *   instance restarted in place takes its own shards back at once) and heartbeats it;
 * - the 100 shards are spread over the live runners by the cluster's hash ring, and a runner runs
 *   a shard's workflows only while it holds that shard's lock: on PostgreSQL a row of the
 *   module's own `cluster_locks` table, renewed every third of the expiration, which another
 *   runner may take only once it has expired (the same runner address takes it back at once).
 *   Not the storage's default session-level advisory locks: their numbers are the same for every
 *   module and database-wide, so two modules running sagas on one database would hold each
 *   other's shards;
 * - a runner whose heartbeat is older than `TESSERA_SAGA_LOCK_EXPIRATION` drops out of the
 *   ring, and its shards (their workflows resumed from storage) go to the others;
 * - the runners do not talk to each other (`Runners.layerNoop`): a workflow started on an
 *   instance that does not hold its shard is written to storage, and the holder finds it within
 *   `TESSERA_SAGA_POLL_INTERVAL`; the starter reads the reply from storage.
 *
 * On the embedded database the locks are the advisory ones: one process owns that database,
 * whose one session holds them (`ModuleSql.embedded` shares it statement by statement with the
 * storage's reserved lock connection), and they end with the process, so a restart finds none.
 */
import {
  ClusterWorkflowEngine,
  RunnerAddress,
  RunnerHealth,
  Runners,
  Sharding,
  ShardingConfig,
  SqlMessageStorage,
  SqlRunnerStorage
} from "@effect/cluster"
import type { SqlClient } from "@effect/sql"
import type { WorkflowEngine } from "@effect/workflow"
import { Cause, Duration, Effect, ExecutionStrategy, Exit, Layer, Option, Schedule, Scope } from "effect"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import * as Settings from "../Settings.ts"

/**
 * Shards per module. Fixed: a workflow's shard is a hash of its id modulo this number, and its
 * stored messages carry it, so changing it would strand work in flight.
 */
export const SHARDS = 100

/**
 * This host's name; where the runtime may not read it (Deno without `--allow-sys=hostname`), a
 * name of this process's own: unique all the same, only a restarted process then waits for its
 * old shards' locks to expire instead of taking them back at once.
 */
const hostName = () => {
  try {
    return os.hostname()
  } catch {
    return `process-${randomUUID()}`
  }
}

/** This process's runner: its host and HTTP port (the process id when the port is chosen by the system). */
export const runnerAddress = Effect.map(Settings.port.config, (port) =>
  RunnerAddress.make(hostName(), port === 0 ? process.pid : port))

/** The engine's cluster settings, from this process's settings. */
export const shardingConfig = (options: { readonly embedded: boolean }) => Effect.gen(function*() {
  const address = yield* runnerAddress
  const pollInterval = yield* Settings.sagaPollInterval.config
  const lockExpiration = yield* Settings.sagaLockExpiration.config
  return {
    ...ShardingConfig.defaults,
    runnerAddress: Option.some(address),
    shardsPerGroup: SHARDS,
    entityMessagePollInterval: pollInterval,
    shardLockExpiration: lockExpiration,
    shardLockDisableAdvisory: !options.embedded,
    // Workflows still running at shutdown are interrupted after this and resume elsewhere.
    entityTerminationTimeout: ENTITY_TERMINATION
  } satisfies ShardingConfig.ShardingConfig["Type"]
})

/**
 * How long a workflow still running at shutdown may take to end before it is interrupted (it
 * resumes from its journal on the instance that takes its shard). Short, not the grace period:
 * once its entity is told to end, a running workflow cannot take its next step (each activity is
 * a message to its own entity, which this runner no longer takes, nor can another runner until
 * this one releases the shard after the interruption), so only one about to end does so in time.
 * An activity in flight is not cut short: it runs to its end either way.
 */
const ENTITY_TERMINATION = Duration.seconds(1)

/** How many times a start whose storage could not be made ready is tried again. */
const STARTS = 8

/**
 * A `WorkflowEngine` over the module's own `SqlClient`, for as long as the layer's scope lives.
 * Its storage creates its tables at first start (`CREATE TABLE IF NOT EXISTS`, and a migrator
 * of its own), which instances started at the same moment on a new database can race to do
 * (one of them fails on a duplicate catalog entry, as a defect): a start that fails is undone
 * and tried again, a few times.
 */
export const layer = (
  module: string,
  options: { readonly embedded: boolean }
): Layer.Layer<WorkflowEngine.WorkflowEngine, never, SqlClient.SqlClient> =>
  Layer.scopedContext(Effect.gen(function*() {
    const config = yield* Effect.orDie(shardingConfig(options))
    const sharding = Sharding.layer.pipe(
      Layer.provideMerge(Runners.layerNoop),
      Layer.provideMerge(SqlMessageStorage.layer),
      Layer.provide([Layer.orDie(SqlRunnerStorage.layer), RunnerHealth.layerNoop]),
      Layer.provide(ShardingConfig.layer(config))
    )
    const engine = ClusterWorkflowEngine.layer.pipe(Layer.provide(sharding))
    const scope = yield* Effect.scope
    const attempt = Effect.flatMap(Scope.fork(scope, ExecutionStrategy.sequential), (child) =>
      Layer.buildWithScope(engine, child).pipe(
        Effect.sandbox,
        Effect.tapError(() => Scope.close(child, Exit.void))
      ))
    const started = attempt.pipe(
      Effect.tapError((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning(`${module}: the workflow engine did not start; trying again`, cause)
      ),
      Effect.retry({
        times: STARTS - 1,
        // Jittered: instances that failed together do not try again in step.
        schedule: Schedule.exponential("200 millis").pipe(Schedule.jittered),
        while: (cause) => !Cause.isInterruptedOnly(cause)
      }),
      Effect.unsandbox
    )
    const context = yield* started
    yield* Effect.logDebug(`${module}: workflow engine started`)
    return context
  }))
