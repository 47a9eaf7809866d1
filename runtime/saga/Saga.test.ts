/**
 * The saga layer on the real engine (ClusterWorkflowEngine over the module's own database), on
 * PostgreSQL and on embedded PGlite, through a toy module hosted as any module is
 * (runtime/testing/SagaToy.ts): success, compensation in reverse, deterministic keys, a
 * compensation retried until it succeeds (stuck meanwhile), a defect tried again a few times
 * then compensated, a forward step retried until it succeeds (stuck meanwhile), and the admin
 * list.
 */
import { Effect, Either, Exit, Schema } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as Module from "../Module.ts"
import * as SagaToy from "../testing/SagaToy.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as Saga from "./Saga.ts"

const holdFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tessera-saga-")), "hold")
process.env.TOY_HOLD = holdFile

const order = (id: string, failAt: string | null = null, flakyCompensations = 0) => ({ id, failAt, flakyCompensations })
const unique = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`

const toy = SagaToy.ToyClient

// Checked by the compiler: only a module that declares workflows may require a WorkflowEngine.
export const undeclared = () =>
  Module.make({
    client: SagaToy.ToyClient,
    // @ts-expect-error the handlers need a WorkflowEngine, which only declared `workflows` bring
    handlers: SagaToy.SagaToyModule.handlers
  })

const waitFor = <A>(effect: Effect.Effect<A | undefined, unknown, any>, what: string, timeoutMs = 20_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const value = yield* effect
      if (value !== undefined) return value
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage(`timed out waiting for ${what}`)
  })

const sagaOf = (id: string) =>
  Effect.flatMap(toy, (c) => c.list({ limit: 100 })).pipe(Effect.map((page) => page.items.find((s) => s.subject === id)))

describe("the admin list's query as URL parameters", () => {
  const decode = Schema.decodeUnknownEither(Saga.SagaUrlParams)
  it("takes a state, a limit written as text and a cursor", () => {
    expect(decode({ state: "stuck", limit: "20", cursor: "42" })).toEqual(Either.right({ state: "stuck", limit: 20, cursor: "42" }))
    expect(decode({})).toEqual(Either.right({}))
  })
  it("refuses an unknown state, a limit out of 1-100 and a cursor with control characters", () => {
    for (const params of [{ state: "done" }, { limit: "0" }, { limit: "101" }, { limit: "ten" }, { cursor: "4\u00002" }]) {
      expect(Either.isLeft(decode(params)), JSON.stringify(params)).toBe(true)
    }
  })
})

TestHost.describeOnDatabases(
  "a saga on the workflow engine",
  (database) =>
    TestHost.layer([SagaToy.SagaToyModule], database, [], {
      TESSERA_SAGA_RETRY_BACKOFF: "20 millis",
      TESSERA_SAGA_STUCK_AFTER: "2"
    }),
  (run) => {
    it("runs every step once and ends completed, each step with the key of its saga and name", async () => {
      const payload = order(unique("ok"))
      const executionId = await Effect.runPromise(SagaToy.ToySaga.executionId(payload))
      const keys = await run(Effect.flatMap(toy, (c) => c.run(payload)))
      expect(keys).toEqual(["one", "two", "three"].map((step) => Saga.keyOf(executionId, step)))
      expect(keys[0]).toBe(`${executionId}:one`)
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id: payload.id })))
      expect(runs.map((r) => `${r.step} ${r.phase}`)).toEqual(["one action", "two action", "three action"])

      const saga = await run(sagaOf(payload.id))
      expect(saga).toMatchObject({ id: executionId, workflow: "ToySaga", state: "completed", error: null })
      expect(saga!.steps.map((s) => [s.step, s.phase, s.status, s.attempts])).toEqual([
        ["one", "action", "succeeded", 1],
        ["two", "action", "succeeded", 1],
        ["three", "action", "succeeded", 1]
      ])
    })

    it("answers a saga run again with its stored result, running no step again", async () => {
      const payload = order(unique("again"))
      const first = await run(Effect.flatMap(toy, (c) => c.run(payload)))
      const second = await run(Effect.flatMap(toy, (c) => c.run(payload)))
      expect(second).toEqual(first)
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id: payload.id })))
      expect(runs).toHaveLength(3)
      // Another saga: other keys.
      const other = await run(Effect.flatMap(toy, (c) => c.run(order(unique("other")))))
      expect(other.filter((k) => first.includes(k))).toEqual([])
    })

    it("compensates the steps that succeeded, in reverse, when a step fails, and ends compensated", async () => {
      const payload = order(unique("fail-two"), "two")
      const exit = await run(Effect.exit(Effect.flatMap(toy, (c) => c.run(payload))))
      expect(exit).toEqual(Exit.fail(new SagaToy.ToyFailed({ step: "two" })))
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id: payload.id })))
      const executionId = await Effect.runPromise(SagaToy.ToySaga.executionId(payload))
      expect(runs.map((r) => `${r.step} ${r.phase} ${r.key}`)).toEqual([
        `one action ${Saga.keyOf(executionId, "one")}`,
        `two action ${Saga.keyOf(executionId, "two")}`,
        // The compensation gets the action's result (here its key).
        `one compensation ${Saga.keyOf(executionId, "one")}`,
        // Then what the module records of a failed saga, with its typed error.
        "saga end failed-at-two"
      ])
      const saga = await run(sagaOf(payload.id))
      expect(saga).toMatchObject({ state: "compensated" })
      expect(saga!.error).toMatch(/^ToyFailed/)
      expect(saga!.steps.map((s) => [s.step, s.phase, s.status])).toEqual([
        ["one", "action", "succeeded"],
        ["two", "action", "failed"],
        ["one", "compensation", "succeeded"]
      ])
      expect(saga!.steps[1]!.error).toMatch(/^ToyFailed/)
    })

    it("compensates a failed step that asks for it first, without its result, then the others in reverse", async () => {
      const payload = order(unique("fail-three"), "three")
      const exit = await run(Effect.exit(Effect.flatMap(toy, (c) => c.run(payload))))
      expect(Exit.isFailure(exit)).toBe(true)
      const executionId = await Effect.runPromise(SagaToy.ToySaga.executionId(payload))
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id: payload.id })))
      expect(runs.filter((r) => r.phase === "compensation").map((r) => `${r.step} ${r.key}`)).toEqual([
        `three none:${Saga.keyOf(executionId, "three")}`,
        `two ${Saga.keyOf(executionId, "two")}`,
        `one ${Saga.keyOf(executionId, "one")}`
      ])
    })

    it("retries a failing compensation until it succeeds: stuck after TESSERA_SAGA_STUCK_AFTER failures, then compensated", async () => {
      const payload = order(unique("stuck"), "two")
      fs.writeFileSync(holdFile, "compensate-one")
      try {
        await run(Effect.flatMap(toy, (c) => c.start(payload)))
        const stuck = await run(waitFor(
          Effect.map(Effect.flatMap(toy, (c) => c.list({ state: "stuck", limit: 100 })), (page) => page.items.find((s) => s.subject === payload.id)),
          "the saga to show as stuck"
        ))
        const compensation = stuck.steps.find((s) => s.phase === "compensation")!
        expect(compensation).toMatchObject({ step: "one", status: "running" })
        expect(compensation.error).toContain("compensation of one fails while held")
        expect(compensation.attempts).toBeGreaterThanOrEqual(3)
      } finally {
        fs.rmSync(holdFile, { force: true })
      }
      const done = await run(waitFor(
        Effect.map(sagaOf(payload.id), (saga) => (saga?.state === "compensated" ? saga : undefined)),
        "the saga to end compensated"
      ))
      expect(done.steps.find((s) => s.phase === "compensation")).toMatchObject({ status: "succeeded", error: null })
    })

    it("tries a step that died again, and compensates once it has died DEFECT_RETRIES more times, keeping the defect", async () => {
      const once = order(unique("die-once"), "two:die-once")
      const keys = await run(Effect.flatMap(toy, (c) => c.run(once)))
      expect(keys).toHaveLength(3)
      const onceSaga = await run(sagaOf(once.id))
      expect(onceSaga).toMatchObject({ state: "completed", error: null })
      expect(onceSaga!.steps.find((s) => s.step === "two")).toMatchObject({ status: "succeeded", attempts: 2, error: null })

      const payload = order(unique("die"), "two:die")
      const exit = await run(Effect.exit(Effect.flatMap(toy, (c) => c.run(payload))))
      expect(Exit.isFailure(exit)).toBe(true)
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id: payload.id })))
      expect(runs.map((r) => `${r.step} ${r.phase}`)).toEqual([
        "one action",
        ...Array.from({ length: 1 + Saga.DEFECT_RETRIES }, () => "two action"),
        "one compensation",
        // What the module records of a saga that died: it sees the defect.
        "saga end"
      ])
      expect(runs.at(-1)!.key).toBe("failed-at-defect")
      const saga = await run(sagaOf(payload.id))
      expect(saga).toMatchObject({ state: "compensated" })
      expect(saga!.error).toContain("step two died")
      expect(saga!.steps.map((s) => [s.step, s.phase, s.status, s.attempts])).toEqual([
        ["one", "action", "succeeded", 1],
        ["two", "action", "failed", 1 + Saga.DEFECT_RETRIES],
        ["one", "compensation", "succeeded", 1]
      ])
      expect(saga!.steps[1]!.error).toContain("step two died")
    })

    it("retries a step that must finish until it succeeds: stuck with its last error meanwhile, then running, then completed", async () => {
      const id = unique("until")
      fs.writeFileSync(holdFile, `${id}:fail-retrying\n${id}:after\n`)
      try {
        await run(Effect.flatMap(toy, (c) => c.startUntil({ id })))
        const stuck = await run(waitFor(
          Effect.map(Effect.flatMap(toy, (c) => c.list({ state: "stuck", limit: 100 })), (page) => page.items.find((s) => s.subject === id)),
          "the saga to show as stuck"
        ))
        expect(stuck.workflow).toBe("ToyUntil")
        expect(stuck.error).toBeNull()
        const retrying = stuck.steps.find((s) => s.step === "retrying")!
        expect(retrying).toMatchObject({ phase: "action", status: "running" })
        expect(retrying.error).toMatch(/^ToyFailed/)
        // TESSERA_SAGA_STUCK_AFTER (2) failed tries, and the one under way.
        expect(retrying.attempts).toBeGreaterThanOrEqual(3)

        // It gets through: the saga runs on (held in the next step).
        fs.writeFileSync(holdFile, `${id}:after\n`)
        const moved = await run(waitFor(
          Effect.map(sagaOf(id), (saga) => saga?.steps.some((s) => s.step === "after") ? saga : undefined),
          "the saga to move on to its next step"
        ))
        expect(moved.state).toBe("running")
        expect(moved.steps.find((s) => s.step === "retrying")).toMatchObject({ status: "succeeded", error: null })
      } finally {
        fs.rmSync(holdFile, { force: true })
      }
      const done = await run(waitFor(
        Effect.map(sagaOf(id), (saga) => (saga?.state === "completed" ? saga : undefined)),
        "the saga to complete"
      ))
      expect(done.steps.map((s) => [s.step, s.status])).toEqual([["retrying", "succeeded"], ["after", "succeeded"]])
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id })))
      expect(runs.filter((r) => r.step === "retrying").length).toBe(done.steps[0]!.attempts)
    })

    it("lists sagas newest first, by state, a page at a time", async () => {
      const a = order(unique("page-a"))
      const b = order(unique("page-b"), "one")
      await run(Effect.flatMap(toy, (c) => c.run(a)))
      await run(Effect.exit(Effect.flatMap(toy, (c) => c.run(b))))
      const first = await run(Effect.flatMap(toy, (c) => c.list({ limit: 1 })))
      expect(first.items.map((s) => s.subject)).toEqual([b.id])
      expect(first.nextCursor).not.toBeNull()
      const second = await run(Effect.flatMap(toy, (c) => c.list({ limit: 1, cursor: first.nextCursor! })))
      expect(second.items.map((s) => s.subject)).toEqual([a.id])

      const compensated = await run(Effect.flatMap(toy, (c) => c.list({ state: "compensated", limit: 100 })))
      expect(compensated.items.every((s) => s.state === "compensated")).toBe(true)
      expect(compensated.items.map((s) => s.subject)).toContain(b.id)
      expect(compensated.items.map((s) => s.subject)).not.toContain(a.id)

      const bad = await run(Effect.either(Effect.flatMap(toy, (c) => c.list({ limit: 1, cursor: "nope" }))))
      expect(bad).toEqual(Either.left(new Saga.SagaCursorInvalid({ cursor: "nope" })))
    })
  }
)

TestHost.describeOnDatabases(
  "a saga retrying at shutdown",
  (database) =>
    TestHost.layer([SagaToy.SagaToyModule], database, [], {
      TESSERA_SAGA_RETRY_BACKOFF: "20 millis",
      TESSERA_SAGA_STUCK_AFTER: "2"
    }),
  (run, restart) => {
    // A step or compensation that retries until it succeeds runs in an activity, which the
    // engine runs uninterruptibly: its retries must still give way to a shutdown (a process
    // whose saga waited for a module that had gone never ended on SIGTERM), and go on after it.
    const stuck = (id: string) =>
      run(waitFor(
        Effect.map(Effect.flatMap(toy, (c) => c.list({ state: "stuck", limit: 100 })), (page) => page.items.find((s) => s.subject === id)),
        "the saga to show as stuck"
      ))
    const ended = (id: string, state: string) =>
      run(waitFor(Effect.map(sagaOf(id), (saga) => (saga?.state === state ? saga : undefined)), `the saga to end ${state}`, 30_000))

    it("a compensation retrying until it succeeds gives way to a shutdown, and carries on after it", async () => {
      const payload = order(unique("held-compensation"), "two")
      fs.writeFileSync(holdFile, "compensate-one")
      try {
        await run(Effect.flatMap(toy, (c) => c.start(payload)))
        await stuck(payload.id)
        // Well within a grace period: the engine gives a running saga 1 s (Engine.ts).
        expect(await restart()).toBeLessThan(10_000)
      } finally {
        fs.rmSync(holdFile, { force: true })
      }
      const done = await ended(payload.id, "compensated")
      expect(done.steps.find((s) => s.phase === "compensation")).toMatchObject({ step: "one", status: "succeeded" })
      // What the module records of the failed saga, once, after its (last) compensation: the
      // shutdown cut the saga short before it, and it was not recorded then.
      const runs = await run(Effect.flatMap(toy, (c) => c.runs({ id: payload.id })))
      expect(runs.filter((r) => r.phase === "end")).toHaveLength(1)
      expect(runs.at(-1)).toMatchObject({ step: "saga", phase: "end" })
      expect(runs.at(-2)).toMatchObject({ step: "one", phase: "compensation" })
    }, 60_000)

    it("a step retrying until it succeeds gives way to a shutdown, and carries on after it", async () => {
      const id = unique("held-step")
      fs.writeFileSync(holdFile, `${id}:fail-retrying\n`)
      try {
        await run(Effect.flatMap(toy, (c) => c.startUntil({ id })))
        await stuck(id)
        expect(await restart()).toBeLessThan(10_000)
      } finally {
        fs.rmSync(holdFile, { force: true })
      }
      const done = await ended(id, "completed")
      expect(done.steps.map((s) => [s.step, s.status])).toEqual([["retrying", "succeeded"], ["after", "succeeded"]])
    }, 60_000)
  }
)

const second = SagaToy.another("sagatoytwo")

TestHost.describeOnDatabases(
  "two modules running sagas on one database",
  (database) => TestHost.layer([SagaToy.SagaToyModule, second.module], database),
  (run) => {
    it("each runs every one of its sagas: neither holds the other's shards", async () => {
      const ids = Array.from({ length: 10 }, (_, i) => unique(`side-${i}`))
      const results = await run(Effect.all(
        ids.flatMap((id) => [
          Effect.flatMap(toy, (c) => c.run(order(id))),
          Effect.flatMap(second.client, (c) => c.run(order(id)))
        ]),
        { concurrency: "unbounded" }
      ).pipe(Effect.timeout("30 seconds")))
      expect(results).toHaveLength(20)
      const lists = await run(Effect.all([
        Effect.flatMap(toy, (c) => c.list({ state: "completed", limit: 100 })),
        Effect.flatMap(second.client, (c) => c.list({ state: "completed", limit: 100 }))
      ]))
      for (const page of lists) expect(page.items.map((s) => s.subject).sort()).toEqual([...ids].sort())
    }, 60_000)
  }
)
