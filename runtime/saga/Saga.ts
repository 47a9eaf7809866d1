/**
 * Sagas: durable sequences of steps, each an action and its compensation, on @effect/workflow
 * (run by the engine the runtime gives every module that declares workflows: Engine.ts).
 *
 *     export const PlaceOrder = Workflow.make({ name: "PlaceOrder", payload: {...}, idempotencyKey: (p) => p.orderId, error: ... })
 *
 *     // in the module's handler layer:
 *     Saga.toLayer(PlaceOrder, (order) =>
 *       Effect.gen(function*() {
 *         const reservation = yield* Saga.step("reserve", {
 *           success: Reservation,
 *           error: OutOfStock,
 *           action: (key) => inventory.reserve({ reservationId: key, lines }),
 *           compensate: (key) => inventory.release({ reservationId: key })
 *         })
 *         yield* Saga.step("charge", { ... })
 *       }), { subject: (order) => order.orderId })
 *
 * What a step guarantees (ARCHITECTURE.md, "Sagas"):
 * - its action is an `Activity`: once it has finished (succeeded or failed with a typed error),
 *   its result is stored and a replay of the saga (after a crash, on another instance) reads it
 *   instead of running it again. An action cut short by a crash runs again from its start: it
 *   runs AT LEAST ONCE, so it must honour its idempotency key `keyOf(executionId, step)`;
 * - when a later step fails, the compensations of the steps that succeeded run in reverse order,
 *   each an Activity of its own (`<step>:compensate`, also at least once, with the same key),
 *   retried with backoff until it succeeds: a saga never ends half-compensated, though one whose
 *   compensation keeps failing shows as `stuck` while it keeps trying;
 * - every transition is recorded in the module's `sagas` / `saga_steps` tables (`list` reads
 *   them) at least once, in order.
 */
import { HttpApiSchema } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Activity, Workflow, type WorkflowEngine } from "@effect/workflow"
import { WorkflowInstance } from "@effect/workflow/WorkflowEngine"
import { Cause, Context, Duration, Effect, Exit, Fiber, FiberSet, type Layer, Option, Schedule, Schema, type Scope } from "effect"
import * as Integer from "../schema/Integer.ts"
import * as Text from "../schema/Text.ts"
import * as Settings from "../Settings.ts"

/**
 * A saga's state:
 * - `running`: its actions are running (or it waits to be resumed);
 * - `compensating`: a step failed and compensations are running;
 * - `stuck`: a compensation, or an action that retries until it succeeds (`untilSucceeds`), has
 *   failed `TESSERA_SAGA_STUCK_AFTER` times and is still retrying (an operator should look); it
 *   becomes `compensating` (`running`) again when that compensation (action) succeeds;
 * - `completed`: every step succeeded;
 * - `compensated`: a step failed and every compensation of the steps before it has run.
 */
export const State = Schema.Literal("running", "compensating", "stuck", "completed", "compensated")
export type State = typeof State.Type

/** The deterministic idempotency key of one step of one saga: the same on every attempt and every replay. */
export const keyOf = (executionId: string, step: string): string => `${executionId}:${step}`

const STEP_NAME = /^[a-z][a-zA-Z0-9_-]{0,62}$/

/** The longest error text recorded. */
const MAX_ERROR = 2000

const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  const text = Option.isSome(failure)
    ? describeValue(failure.value)
    : Cause.pretty(cause, { renderErrorCause: false }).split("\n")[0] ?? "failed"
  return text.length > MAX_ERROR ? text.slice(0, MAX_ERROR) : text
}

const describeValue = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const tag = (error as { _tag?: unknown })._tag
    const message = (error as { message?: unknown }).message
    if (typeof tag === "string") return typeof message === "string" && message !== "" ? `${tag}: ${message}` : tag
    if (typeof message === "string") return message
  }
  return String(error)
}

// --- recording (runtime/saga/SagaMigrations.ts) ---

const ensureSaga = (sql: SqlClient.SqlClient, executionId: string, workflow: string, subject: string | null) =>
  sql`INSERT INTO sagas (execution_id, workflow, subject, state)
      VALUES (${executionId}, ${workflow}, ${subject}, 'running')
      ON CONFLICT (execution_id) DO ${subject === null ? sql`NOTHING` : sql`UPDATE SET subject = EXCLUDED.subject WHERE sagas.subject IS NULL`}`

const setState = (sql: SqlClient.SqlClient, executionId: string, state: State, from: ReadonlyArray<State>, error?: string) =>
  sql`UPDATE sagas SET state = ${state}, updated_at = clock_timestamp()${
    error === undefined ? sql`` : sql`, error = ${error}`
  } WHERE execution_id = ${executionId} AND state IN ${sql.in(from)}`

type Phase = "action" | "compensation"

const stepStarted = (sql: SqlClient.SqlClient, executionId: string, step: string, phase: Phase) =>
  sql`INSERT INTO saga_steps (execution_id, step, phase, status, attempts)
      VALUES (${executionId}, ${step}, ${phase}, 'running', 1)
      ON CONFLICT (execution_id, step, phase) DO UPDATE
        SET attempts = saga_steps.attempts + 1, status = 'running', finished_at = NULL
        WHERE saga_steps.status <> 'succeeded'`

const stepEnded = (
  sql: SqlClient.SqlClient,
  executionId: string,
  step: string,
  phase: Phase,
  status: "succeeded" | "failed",
  error: string | null
) =>
  sql`UPDATE saga_steps SET status = ${status}, error = ${error}, finished_at = clock_timestamp()
      WHERE execution_id = ${executionId} AND step = ${step} AND phase = ${phase}`

/** A failed try of an action or compensation: its attempts and last error on its row. */
const stepFailed = (sql: SqlClient.SqlClient, executionId: string, step: string, phase: Phase, cause: Cause.Cause<unknown>) =>
  sql`UPDATE saga_steps SET attempts = attempts + 1, error = ${describe(cause)}
      WHERE execution_id = ${executionId} AND step = ${step} AND phase = ${phase}`

/** Records, as a workflow-scope finalizer, how the saga ended; it runs after every compensation. */
const recordEnd = (sql: SqlClient.SqlClient, executionId: string) => (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isSuccess(exit)
    ? setState(sql, executionId, "completed", ["running"])
    : setState(sql, executionId, "compensated", ["running", "compensating", "stuck"], describe(exit.cause))

const recorded = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  // Recording never fails a saga: its own statements are retried a few times, then given up
  // (the engine's own storage, not these tables, is what the saga resumes from).
  effect.pipe(
    Effect.retry({ times: 3, schedule: Schedule.exponential("100 millis") }),
    Effect.catchAllCause((cause) => Effect.logWarning("saga: could not record a transition", cause)),
    Effect.asVoid
  )

// --- starting a saga from a request ---

/**
 * What starts sagas for requests, for the life of the scope: `start(execute)` runs a workflow's
 * `execute(payload, { discard: true })` and waits at most `within` for it. Starting hands a
 * message to the workflow engine's shard, which waits while that shard changes hands between
 * instances (one died, or its shard locks timed out on a loaded database); the request's own
 * change is committed by then, so its answer need not wait. A start that fails within `within`
 * fails the request (its client asks again); one still under way goes on after the answer (and
 * is interrupted when the scope closes), and whatever the owning module sweeps for (a request
 * whose saga never started) covers a process that dies first. A second start of one execution is
 * that execution, so asking again is safe.
 */
export const starter = (within: Duration.DurationInput) =>
  Effect.map(FiberSet.make(), (starting) =>
    <E, R>(execute: Effect.Effect<unknown, E, R>): Effect.Effect<void, E, R> =>
      execute.pipe(
        Effect.tapErrorCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning("saga: starting failed; it is started again when asked again or swept", cause)
        ),
        FiberSet.run(starting),
        Effect.flatMap((fiber) => Effect.timeoutOption(Fiber.join(fiber), within)),
        Effect.asVoid
      ))

// --- running a saga ---

/** Whether the current fiber runs inside `run`, which has recorded the saga already. */
class InSaga extends Context.Reference<InSaga>()("tessera/saga/InSaga", { defaultValue: () => false }) {}

/**
 * Runs `body` as a saga: records it (`running`), and how it ends (`completed`, or `compensated`
 * once every compensation has run, with the failure as its `error`). Use it as the whole body of
 * a workflow's implementation (`toLayer` does).
 */
export const run = <A, E, R>(
  body: Effect.Effect<A, E, R>,
  options?: { readonly subject?: string | undefined }
): Effect.Effect<A, E, R | SqlClient.SqlClient | WorkflowInstance> =>
  Effect.gen(function*() {
    const instance = yield* WorkflowInstance
    const sql = yield* SqlClient.SqlClient
    yield* recorded(ensureSaga(sql, instance.executionId, instance.workflow.name, options?.subject ?? null))
    // Added before any step's compensation, so it runs after all of them (finalizers run in reverse).
    // A saga only interrupted (its process stopping, its shard moving) has not ended: it resumes.
    yield* Workflow.addFinalizer((exit) =>
      Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) && !instance.interrupted
        ? Effect.void
        : untilStopped(instance, recorded(recordEnd(sql, instance.executionId)(exit)))
    )
    return yield* Effect.provideService(body, InSaga, true)
  })

/**
 * Runs `f` with the saga's failure once every compensation has run: for what the owning module
 * records of a failed saga (an order cancelled, with its reason, from the typed error in
 * `cause`, or a defect). Call it at the start of the saga's body, before any step: finalizers
 * run in reverse order, so it then runs after the compensations of every step. At least once,
 * as a step; a defect of `f` (its database unreachable) is retried with the compensations'
 * backoff until it succeeds, so that what the module records is never left out. `cause` is
 * only interruption when the saga was cut short (a shutdown) and will resume: `f` should
 * record nothing then.
 */
export const afterCompensations = <R>(
  f: (cause: Cause.Cause<unknown>) => Effect.Effect<void, never, R>
): Effect.Effect<void, never, R | WorkflowInstance> =>
  Effect.flatMap(WorkflowInstance, (instance) =>
  Workflow.addFinalizer((exit) =>
    Exit.isFailure(exit)
      ? untilStopped(instance, Effect.flatMap(Effect.orDie(backoff), (schedule) =>
        f(exit.cause).pipe(
          Effect.sandbox,
          Effect.tapError((cause) =>
            Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning("saga: recording its end failed; tried again", cause)
          ),
          Effect.retry({ schedule, while: (cause) => !Cause.isInterruptedOnly(cause) }),
          Effect.unsandbox
        )))
      : Effect.void
  ))

/**
 * Registers `workflow`'s implementation as a saga (`run`): the layer goes into the handler layer
 * of the module that declares `workflow` in its `workflows`.
 */
export const toLayer = <
  Name extends string,
  Payload extends Workflow.AnyStructSchema,
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All,
  R
>(
  workflow: Workflow.Workflow<Name, Payload, Success, Error>,
  execute: (payload: Payload["Type"], executionId: string) => Effect.Effect<Success["Type"], Error["Type"], R>,
  options?: {
    /** What the saga is about, shown in `list` (an order id). */
    readonly subject?: (payload: Payload["Type"]) => string
  }
) =>
  workflow.toLayer((payload, executionId) =>
    run(execute(payload, executionId), { subject: options?.subject?.(payload) })
  ) as Layer.Layer<
    never,
    never,
    | WorkflowEngine.WorkflowEngine
    | SqlClient.SqlClient
    | Exclude<R, WorkflowEngine.WorkflowEngine | WorkflowInstance | Workflow.Execution<Name> | Scope.Scope>
    | Payload["Context"]
    | Success["Context"]
    | Error["Context"]
  >

/**
 * A saga's finalizer (a compensation, recording its end), interruptible unless the saga itself
 * was interrupted on purpose (`Workflow.interrupt`, whose compensations must run). Finalizers
 * run uninterruptibly, and a compensation waits for its activity's answer, which a compensation
 * retrying until it succeeds (the module it calls gone) never gives: such a saga held its process
 * at shutdown until it was killed. At shutdown this is where the saga stops, recording nothing:
 * it compensates on when it resumes (the compensations that finished are in its journal).
 */
const untilStopped = <E, R>(instance: WorkflowInstance["Type"], finalizer: Effect.Effect<void, E, R>) =>
  instance.interrupted ? finalizer : Effect.suspend(() =>
    cutShort.has(instance)
      ? Effect.void
      : Effect.interruptible(finalizer).pipe(Effect.onInterrupt(() => Effect.sync(() => cutShort.add(instance))))
  )

/**
 * The runs of sagas whose finalizers a shutdown cut short. The finalizers after one that was cut
 * short still ran (seen: the saga recorded compensated, and its module told of the failure, with
 * a compensation still to run), so each checks here: once one is cut short, the rest of that run's
 * are left to its resume.
 */
const cutShort = new WeakSet<WorkflowInstance["Type"]>()

/** The first wait before a retry and each next one doubled, up to a minute, with jitter. */
const backoff = Effect.map(Settings.sagaRetryBackoff.config, (first) =>
  Schedule.exponential(first, 2).pipe(
    Schedule.either(Schedule.spaced(Duration.minutes(1))),
    Schedule.jittered
  ))

/**
 * How often a defect of an action (an error its step does not declare: an rpc answering what the
 * step does not expect, a database statement that failed) is tried again, with the saga's
 * backoff, before it fails the saga. Some defects pass (a connection dropped mid-statement
 * becomes a defect at the service edge), and every action may run again anyway (it honours its
 * key), so a few quick retries cost nothing; most are bugs or contract breaks that will fail
 * again, and retrying those for ever would leave the saga, and what it is about (an order),
 * unfinished with nothing shown. So: a few, then the saga fails and compensates, and its record
 * keeps the defect for an operator.
 */
export const DEFECT_RETRIES = 3

/** Whether `cause` is defects only (no typed failure, no interruption). */
const isDefectOnly = (cause: Cause.Cause<unknown>) =>
  Cause.isDie(cause) && Option.isNone(Cause.failureOption(cause)) && !Cause.isInterrupted(cause)

export interface StepOptions<
  Success extends Schema.Schema.Any,
  Error extends Schema.Schema.All,
  R,
  R2
> {
  /** The action's result, stored by the engine (replays read it back): default `Schema.Void`. */
  readonly success?: Success
  /**
   * The action's typed errors, stored the same way: default `Schema.Never`. A failure outside
   * this schema is stored as a defect: the saga still fails and compensates.
   */
  readonly error?: Error
  /**
   * The step's work. Runs at least once: it must honour `key` (`keyOf(executionId, step)`). A
   * defect is tried again `DEFECT_RETRIES` times before it fails the saga; a typed error fails
   * it at once (unless `retry` says otherwise).
   */
  readonly action: (key: string) => Effect.Effect<Success["Type"], Error["Type"], R>
  /**
   * Undoes the action, given its key and its result (`None` when the action failed and
   * `compensateFailed` is set). Runs at least once, and is retried with backoff
   * (`TESSERA_SAGA_RETRY_BACKOFF`) until it succeeds: it must be idempotent, and succeed when
   * there is nothing (left) to undo.
   */
  readonly compensate?: (key: string, value: Option.Option<Success["Type"]>) => Effect.Effect<unknown, unknown, R2>
  /**
   * Compensate this step also when its own action failed: for an action whose failure may leave
   * part of its effect behind (a charge whose answer was lost). Default false.
   */
  readonly compensateFailed?: boolean
  /**
   * Retries of the action inside one run of it, with the saga's backoff: at most `times`, only
   * for errors `while` accepts (default: every typed error). Calls to other modules already
   * retry what their resilience policy allows (runtime/resilience/Policy.ts); this is for
   * failures the step itself knows to be passing. Default: none.
   */
  readonly retry?: {
    readonly times: number
    readonly while?: (error: Error["Type"]) => boolean
  }
}

/**
 * A step that must finish: its action is tried again after every failure (a typed error or a
 * defect), with the saga's backoff (`TESSERA_SAGA_RETRY_BACKOFF`, doubling, at most a minute
 * apart), until it succeeds; it never fails the saga. After `TESSERA_SAGA_STUCK_AFTER` failed
 * tries the saga shows as `stuck`, the step `running` with its last error, and `running` again
 * once the action succeeds. For a saga that has no way back (undoing an order forward: each
 * step must happen), as compensations have none.
 */
export interface UntilSucceedsOptions<Success extends Schema.Schema.Any, R, R2> {
  readonly untilSucceeds: true
  /** The action's result, stored by the engine (replays read it back): default `Schema.Void`. */
  readonly success?: Success
  /** The step's work. Runs at least once, and again after each failure: it must honour `key`. */
  readonly action: (key: string) => Effect.Effect<Success["Type"], unknown, R>
  /** As `StepOptions.compensate`: undoes the action if a later step fails the saga. */
  readonly compensate?: (key: string, value: Option.Option<Success["Type"]>) => Effect.Effect<unknown, unknown, R2>
}

/** What a step needs besides its action's and compensation's own requirements. */
type StepContext<R> =
  | Exclude<R, WorkflowInstance | WorkflowEngine.WorkflowEngine | Scope.Scope>
  | SqlClient.SqlClient
  | WorkflowEngine.WorkflowEngine
  | WorkflowInstance

/**
 * One step of the saga `run` runs: `options.action` as an Activity named `name`, its
 * compensation registered with the workflow (`Workflow.addFinalizer`, as
 * `Workflow.withCompensation` does) to run if the saga fails later. Step names are unique
 * within a saga: `[a-z][a-zA-Z0-9_-]*`, up to 63 characters. With `untilSucceeds: true`, the
 * action is retried until it succeeds (`UntilSucceedsOptions`).
 */
export function step<Success extends Schema.Schema.Any = typeof Schema.Void, R = never, R2 = never>(
  name: string,
  options: UntilSucceedsOptions<Success, R, R2>
): Effect.Effect<Success["Type"], never, StepContext<R | R2> | Success["Context"]>
export function step<
  Success extends Schema.Schema.Any = typeof Schema.Void,
  Error extends Schema.Schema.All = typeof Schema.Never,
  R = never,
  R2 = never
>(
  name: string,
  options: StepOptions<Success, Error, R, R2>
): Effect.Effect<Success["Type"], Error["Type"], StepContext<R | R2> | Success["Context"] | Error["Context"]>
export function step(
  name: string,
  options: StepOptions<Schema.Schema.Any, Schema.Schema.All, unknown, unknown> | UntilSucceedsOptions<Schema.Schema.Any, unknown, unknown>
): Effect.Effect<unknown, unknown, any> {
  return Effect.gen(function*() {
    if (!STEP_NAME.test(name)) return yield* Effect.dieMessage(`saga step name ${JSON.stringify(name)} is not [a-z][a-zA-Z0-9_-]{0,62}`)
    const instance = yield* WorkflowInstance
    const sql = yield* SqlClient.SqlClient
    const executionId = instance.executionId
    const key = keyOf(executionId, name)
    const schedule = yield* Effect.orDie(backoff)
    const stuckAfter = yield* Effect.orDie(Settings.sagaStuckAfter.config)
    // A step outside `run` records its saga itself.
    const started = (yield* InSaga)
      ? stepStarted(sql, executionId, name, "action")
      : Effect.zipRight(ensureSaga(sql, executionId, instance.workflow.name, null), stepStarted(sql, executionId, name, "action"))

    const untilSucceeds = "untilSucceeds" in options && options.untilSucceeds === true
    const once = "retry" in options && options.retry !== undefined
      ? options.action(key).pipe(
        Effect.retry({
          schedule,
          times: options.retry.times,
          ...(options.retry.while ? { while: options.retry.while } : {})
        })
      )
      : options.action(key)

    // Each failed try that is tried again counts on the step's row (attempts, last error).
    const attempt = Effect.suspend(() => {
      let failures = 0
      const failedTry = (cause: Cause.Cause<unknown>) => {
        failures++
        return recorded(Effect.zipRight(
          stepFailed(sql, executionId, name, "action", cause),
          untilSucceeds && failures >= stuckAfter ? setState(sql, executionId, "stuck", ["running"]) : Effect.void
        ))
      }
      return untilSucceeds
        ? once.pipe(
          Effect.sandbox,
          Effect.tapError((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : failedTry(cause)),
          Effect.retry({ schedule, while: (cause) => !Cause.isInterruptedOnly(cause) }),
          // What is left is an interruption (shutdown): the action runs again on resume.
          Effect.unsandbox,
          Effect.orDie,
          Effect.tap(() => recorded(setState(sql, executionId, "running", ["stuck"])))
        )
        : once.pipe(
          Effect.sandbox,
          Effect.tapError((cause) =>
            isDefectOnly(cause) && failures < DEFECT_RETRIES
              ? Effect.zipRight(Effect.logWarning(`saga: step ${name} died; tried again`, cause), failedTry(cause))
              : Effect.void
          ),
          Effect.retry({ schedule, times: DEFECT_RETRIES, while: isDefectOnly }),
          Effect.unsandbox
        )
    })
    const action = Activity.make({
      name,
      success: options.success,
      error: "error" in options ? options.error : undefined,
      execute: Effect.zipRight(recorded(started), attempt).pipe(
        Effect.onExit((exit) =>
          Exit.isSuccess(exit)
            ? recorded(stepEnded(sql, executionId, name, "action", "succeeded", null))
            : Cause.isInterruptedOnly(exit.cause)
            ? Effect.void
            : recorded(stepEnded(sql, executionId, name, "action", "failed", describe(exit.cause)))
        )
      )
    })

    const compensate = options.compensate
    if (compensate === undefined) return yield* action

    const compensation = (value: Option.Option<unknown>) =>
      Activity.make({
        name: `${name}:compensate`,
        execute: Effect.gen(function*() {
          yield* recorded(setState(sql, executionId, "compensating", ["running"]))
          let failures = 0
          yield* recorded(stepStarted(sql, executionId, name, "compensation"))
          yield* compensate(key, value).pipe(
            Effect.sandbox,
            Effect.tapError((cause) => {
              if (Cause.isInterruptedOnly(cause)) return Effect.void
              failures++
              return recorded(Effect.zipRight(
                stepFailed(sql, executionId, name, "compensation", cause),
                failures >= stuckAfter ? setState(sql, executionId, "stuck", ["running", "compensating"]) : Effect.void
              ))
            }),
            Effect.retry({ schedule, while: (cause) => !Cause.isInterruptedOnly(cause) }),
            // What is left is an interruption (shutdown): the compensation runs again on resume.
            Effect.unsandbox,
            Effect.orDie
          )
          yield* recorded(Effect.zipRight(
            stepEnded(sql, executionId, name, "compensation", "succeeded", null),
            setState(sql, executionId, "compensating", ["stuck"])
          ))
        })
      })

    const compensateFailed = "compensateFailed" in options && options.compensateFailed === true
    // As Workflow.withCompensation, and also after a failed action when asked to.
    return yield* Effect.uninterruptibleMask((restore) =>
      restore(action).pipe(
        Effect.onExit((exit) => {
          const value = Exit.isSuccess(exit)
            ? Option.some(Option.some(exit.value))
            : compensateFailed && !Cause.isInterruptedOnly(exit.cause)
            ? Option.some(Option.none())
            : Option.none()
          if (Option.isNone(value)) return Effect.void
          // Not when the saga was only interrupted (its process stopping, its shard moving): it
          // resumes from its journal elsewhere and goes on. Compensating here would undo a saga
          // still under way, and at shutdown the compensation could not even run (an activity is
          // a message to the saga's own entity, which no longer takes any): the process hung.
          return Workflow.addFinalizer((end) =>
            Exit.isSuccess(end) || (Cause.isInterruptedOnly(end.cause) && !instance.interrupted)
              ? Effect.void
              : untilStopped(instance, Effect.orDie(compensation(value.value)))
          )
        })
      )
    )
  })
}

// --- the admin view ---

/** One step's phase in a saga's history. */
export class SagaStep extends Schema.Class<SagaStep>("saga/SagaStep")({
  step: Schema.String,
  phase: Schema.Literal("action", "compensation"),
  status: Schema.Literal("running", "succeeded", "failed"),
  /**
   * Tries: runs of the action (a replay after a crash counts, and so does each try again after a
   * defect or, for a step that retries until it succeeds, after any failure), or failed tries of
   * the compensation plus one.
   */
  attempts: Schema.Number,
  error: Schema.NullOr(Schema.String),
  startedAt: Schema.DateTimeUtc,
  finishedAt: Schema.NullOr(Schema.DateTimeUtc)
}) {}

/** A saga as an admin sees it: its state and its steps in the order they started. */
export class SagaView extends Schema.Class<SagaView>("saga/SagaView")({
  /** The workflow execution id. */
  id: Schema.String,
  workflow: Schema.String,
  /** What it is about (an order id), when its workflow says. */
  subject: Schema.NullOr(Schema.String),
  state: State,
  /** Why it failed, for a saga that compensated. */
  error: Schema.NullOr(Schema.String),
  steps: Schema.Array(SagaStep),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

/** One page of sagas, newest first; `nextCursor` is null on the last page. */
export class SagaPage extends Schema.Class<SagaPage>("saga/SagaPage")({
  items: Schema.Array(SagaView),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

/** The paging cursor was not one `list` handed out (400). */
export class SagaCursorInvalid extends Schema.TaggedError<SagaCursorInvalid>()(
  "SagaCursorInvalid",
  { cursor: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return "the cursor is not one this API returned"
  }
}

/** A query of `list` as an rpc's payload: `limit` 1-100 (the caller's default when absent). */
export const SagaQuery = Schema.Struct({
  state: Schema.optionalWith(Text.oneOf(State), { exact: true }),
  limit: Schema.optionalWith(Integer.between(1, 100), { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 40 }), { exact: true })
})
export type SagaQuery = typeof SagaQuery.Type

/** The same query as a route's URL parameters (`?state=stuck&limit=20&cursor=...`). */
export const SagaUrlParams = Schema.Struct({
  state: Schema.optionalWith(Text.oneOf(State), { exact: true }),
  limit: Schema.optionalWith(Integer.pageSize, { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 40 }), { exact: true })
})

const CURSOR = /^[1-9][0-9]{0,17}$/

interface SagaRow {
  readonly cursor: string
  readonly execution_id: string
  readonly workflow: string
  readonly subject: string | null
  readonly state: State
  readonly error: string | null
  readonly created_at: Date
  readonly updated_at: Date
}

interface StepRow {
  readonly execution_id: string
  readonly step: string
  readonly phase: "action" | "compensation"
  readonly status: "running" | "succeeded" | "failed"
  readonly attempts: number
  readonly error: string | null
  readonly started_at: Date
  readonly finished_at: Date | null
}

const utc = (date: Date) => Schema.decodeSync(Schema.DateTimeUtcFromDate)(date)

/**
 * The module's sagas, newest first, `state` only if given, with their step history: for the
 * admin view of the module that runs them (with its own SQL client).
 */
export const list = (query: { readonly state?: State | undefined; readonly cursor?: string | undefined; readonly limit: number }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (query.cursor !== undefined && !CURSOR.test(query.cursor)) return yield* new SagaCursorInvalid({ cursor: query.cursor })
    const limit = Math.max(1, Math.min(100, Math.floor(query.limit)))
    const conditions = [
      ...(query.state === undefined ? [] : [sql`state = ${query.state}`]),
      ...(query.cursor === undefined ? [] : [sql`seq < ${query.cursor}`])
    ]
    const rows = yield* sql<SagaRow>`
      SELECT seq::text AS cursor, execution_id, workflow, subject, state, error, created_at, updated_at
      FROM sagas ${conditions.length === 0 ? sql`` : sql`WHERE ${sql.and(conditions)}`}
      ORDER BY sagas.seq DESC LIMIT ${limit + 1}`
    const page = rows.slice(0, limit)
    const steps = page.length === 0 ? [] : yield* sql<StepRow>`
      SELECT execution_id, step, phase, status, attempts, error, started_at, finished_at
      FROM saga_steps WHERE execution_id IN ${sql.in(page.map((r) => r.execution_id))}
      ORDER BY started_at, phase`
    const byId = new Map<string, Array<SagaStep>>()
    for (const s of steps) {
      const list = byId.get(s.execution_id) ?? []
      list.push(new SagaStep({
        step: s.step,
        phase: s.phase,
        status: s.status,
        attempts: s.attempts,
        error: s.error,
        startedAt: utc(s.started_at),
        finishedAt: s.finished_at === null ? null : utc(s.finished_at)
      }))
      byId.set(s.execution_id, list)
    }
    return new SagaPage({
      items: page.map((r) =>
        new SagaView({
          id: r.execution_id,
          workflow: r.workflow,
          subject: r.subject,
          state: r.state,
          error: r.error,
          steps: byId.get(r.execution_id) ?? [],
          createdAt: utc(r.created_at),
          updatedAt: utc(r.updated_at)
        })
      ),
      nextCursor: rows.length > limit ? page[page.length - 1]!.cursor : null
    })
  }).pipe(Effect.catchTag("SqlError", Effect.die), Effect.withSpan("Saga.list"))
