/**
 * A module for the saga layer's own tests: a saga of three steps (`one`, `two`, `three`), each
 * recording every run of its action and of its compensation in `toy_runs` (and, when `TOY_LOG`
 * names a file, as a line there, which a test reads while the process runs). A payload can make
 * a step fail (`failAt`: its name), die (`<step>:die`), or die on its first run only
 * (`<step>:die-once`), the first step's compensation fail a number of times
 * (`flakyCompensations`); a step waits while a line of the file `TOY_HOLD` names it (a test
 * kills the process there), and the first step's compensation fails while one says
 * `compensate-one` (either for every saga, or as `<id>:<what>` for one).
 *
 * A second saga, `ToyUntil`, has a step `retrying` that retries until it succeeds
 * (`Saga.step`'s `untilSucceeds`): it fails while a line of `TOY_HOLD` says `fail-retrying`;
 * then a step `after` that waits while one says `after`.
 *
 * `SagaToyHost.ts` serves it as a process of its own.
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { Workflow, WorkflowEngine } from "@effect/workflow"
import { Cause, Effect, Exit, Layer, Option, Schedule, Schema } from "effect"
import * as fs from "node:fs"
import * as Module from "../Module.ts"
import * as Saga from "../saga/Saga.ts"

export class ToyFailed extends Schema.TaggedError<ToyFailed>()("ToyFailed", { step: Schema.String }) {}

const Order = {
  id: Schema.String,
  failAt: Schema.NullOr(Schema.String),
  flakyCompensations: Schema.Number
}

export const ToySaga = Workflow.make({
  name: "ToySaga",
  payload: Order,
  idempotencyKey: (order) => order.id,
  success: Schema.Array(Schema.String),
  error: ToyFailed
})

export const ToyUntil = Workflow.make({
  name: "ToyUntil",
  payload: { id: Schema.String },
  idempotencyKey: (payload) => payload.id
})

export class ToyRun extends Schema.Class<ToyRun>("toy/ToyRun")({
  step: Schema.String,
  /** `end`: what the saga recorded once every compensation had run (`Saga.afterCompensations`). */
  phase: Schema.Literal("action", "compensation", "end"),
  key: Schema.String
}) {}

export class ToyRpcs extends RpcGroup.make(
  /** Runs the saga of `id` and waits for its end. */
  Rpc.make("run", { payload: Order, success: Schema.Array(Schema.String), error: ToyFailed }),
  /** Starts the saga of `id`; answers its execution id at once. */
  Rpc.make("start", { payload: Order, success: Schema.String }),
  /** Starts the saga ToyUntil of `id`; answers its execution id at once. */
  Rpc.make("startUntil", { payload: { id: Schema.String }, success: Schema.String }),
  Rpc.make("list", { payload: Saga.SagaQuery, success: Saga.SagaPage, error: Saga.SagaCursorInvalid }),
  /** Every run of an action or compensation of the saga of `id`, in order. */
  Rpc.make("runs", { payload: { id: Schema.String }, success: Schema.Array(ToyRun) })
) {}

export class ToyClient extends Module.ModuleClient("sagatoy", ToyRpcs)<ToyClient>() {}

const STEPS = ["one", "two", "three"] as const

/** Whether a line of the file `TOY_HOLD` says `what`, for every saga or as `<id>:<what>` for saga `id`. */
const held = (id: string, what: string) => {
  const file = process.env.TOY_HOLD
  if (file === undefined || file === "" || !fs.existsSync(file)) return false
  return fs.readFileSync(file, "utf8").split("\n").map((l) => l.trim()).some((l) => l === what || l === `${id}:${what}`)
}

const hold = (id: string, step: string) =>
  Effect.gen(function*() {
    while (held(id, step)) yield* Effect.sleep("50 millis")
  })

/** A line of `TOY_LOG`: `<ms> <instance> <id> <step> <phase> <event> <key>`. */
const logLine = (id: string, step: string, phase: string, event: string, key: string) =>
  Effect.sync(() => {
    const log = process.env.TOY_LOG
    if (log) fs.appendFileSync(log, `${Date.now()} ${process.env.TOY_INSTANCE ?? "-"} ${id} ${step} ${phase} ${event} ${key}\n`)
  })

const record = (sql: SqlClient.SqlClient, id: string, step: string, phase: "action" | "compensation" | "end", key: string) =>
  Effect.gen(function*() {
    yield* sql`INSERT INTO toy_runs (id, step, phase, key) VALUES (${id}, ${step}, ${phase}, ${key})`
    yield* logLine(id, step, phase, "start", key)
  }).pipe(Effect.orDie)

/** Logs how a run of an action ended. */
const logged = (id: string, step: string, key: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.onExit(effect, (exit) =>
    logLine(id, step, "action", Exit.isSuccess(exit) ? "ok" : Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "failed", key))

const sagaLayer = Layer.unwrapEffect(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return Saga.toLayer(ToySaga, (order) =>
    Effect.zipRight(
      Saga.afterCompensations((cause) =>
        Effect.gen(function*() {
          const failure = Cause.failureOption(cause)
          const reason = Option.isSome(failure) && failure.value instanceof ToyFailed ? failure.value.step : "defect"
          yield* record(sql, order.id, "saga", "end", `failed-at-${reason}`)
        })
      ),
      Effect.forEach(STEPS, (step) =>
      Saga.step(step, {
        success: Schema.String,
        error: ToyFailed,
        action: (key) =>
          Effect.gen(function*() {
            yield* record(sql, order.id, step, "action", key)
            yield* hold(order.id, step)
            if (order.failAt === step) return yield* new ToyFailed({ step })
            if (order.failAt === `${step}:die`) return yield* Effect.die(new Error(`step ${step} died`))
            if (order.failAt === `${step}:die-once`) {
              const [{ n }] = yield* sql<{ n: number }>`
                SELECT count(*)::int AS n FROM toy_runs WHERE id = ${order.id} AND step = ${step} AND phase = 'action'`.pipe(Effect.orDie)
              if (n === 1) return yield* Effect.die(new Error(`step ${step} died once`))
            }
            return key
          }).pipe(logged(order.id, step, key)),
        compensate: (key, value) =>
          Effect.gen(function*() {
            yield* record(sql, order.id, step, "compensation", Option.getOrElse(value, () => `none:${key}`))
            if (step !== "one") return
            const [{ n }] = yield* sql<{ n: number }>`
              SELECT count(*)::int AS n FROM toy_runs WHERE id = ${order.id} AND step = 'one' AND phase = 'compensation'`
            if (n <= order.flakyCompensations) return yield* Effect.fail(`compensation ${n} of one fails on purpose`)
            if (held(order.id, "compensate-one")) return yield* Effect.fail("compensation of one fails while held")
          }).pipe(Effect.orDie),
        // The last step is compensated even when it fails itself.
        compensateFailed: step === "three"
      }))
    ), { subject: (order) => order.id })
}))

const untilLayer = Layer.unwrapEffect(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return Saga.toLayer(ToyUntil, ({ id }) =>
    Effect.gen(function*() {
      yield* Saga.step("retrying", {
        untilSucceeds: true,
        action: (key) =>
          Effect.gen(function*() {
            yield* record(sql, id, "retrying", "action", key)
            if (held(id, "fail-retrying")) return yield* new ToyFailed({ step: "retrying" })
          })
      })
      yield* Saga.step("after", {
        action: (key) => Effect.zipRight(record(sql, id, "after", "action", key), hold(id, "after"))
      })
    }), { subject: ({ id }) => id })
}))

const handlers = ToyRpcs.toLayer(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const engine = yield* WorkflowEngine.WorkflowEngine
  const withEngine = Effect.provideService(WorkflowEngine.WorkflowEngine, engine)
  return {
    run: (order) => withEngine(ToySaga.execute(order)),
    start: (order) => withEngine(ToySaga.execute(order, { discard: true })),
    startUntil: (payload) => withEngine(ToyUntil.execute(payload, { discard: true })),
    list: (query) => Saga.list({ ...query, limit: query.limit ?? 20 }).pipe(Effect.provideService(SqlClient.SqlClient, sql)),
    runs: ({ id }) =>
      sql<ToyRun>`SELECT step, phase, key FROM toy_runs WHERE id = ${id} ORDER BY seq`.pipe(
        Effect.map((rows) => rows.map((r) => new ToyRun(r))),
        Effect.orDie
      )
  }
})).pipe(
  Layer.provideMerge(Layer.merge(sagaLayer, untilLayer)),
  Layer.provideMerge(Layer.effectDiscard(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Instances started together race to create it (PostgreSQL's IF NOT EXISTS is not atomic
    // across sessions: the loser fails "already exists"); tried again, it finds the table.
    yield* sql`CREATE TABLE IF NOT EXISTS toy_runs (
      seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id text NOT NULL, step text NOT NULL, phase text NOT NULL, key text NOT NULL)`.pipe(
      Effect.retry({ times: 3, schedule: Schedule.spaced("100 millis") })
    )
  }).pipe(Effect.orDie)))
)

export const SagaToyModule = Module.make({
  client: ToyClient,
  handlers,
  workflows: [ToySaga, ToyUntil]
})

/** The same module under another name (its own schema): two modules running sagas side by side. */
export const another = <const Name extends string>(name: Name) => {
  class Client extends Module.ModuleClient(name, ToyRpcs)<Client>() {}
  return { client: Client, module: Module.make({ client: Client, handlers, workflows: [ToySaga, ToyUntil] }) }
}
