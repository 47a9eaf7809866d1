/**
 * `tessera` with the saga toy as its only module (SagaToy.ts), for tests that run it as a
 * process of its own: `node dist/test-saga-toy.mjs serve`, compiled by ToyHosts.ts. Besides what
 * SagaToy reads, `TOY_START` names a file that it reads every 100 ms: each line `<id>` or
 * `<id>:<failAt>` starts that saga (again and again: starting a saga that exists changes
 * nothing, which the tests rely on too).
 */
import { WorkflowEngine } from "@effect/workflow"
import { Effect, Layer, Schedule } from "effect"
import * as fs from "node:fs"
import * as Cli from "../Cli.ts"
import * as Module from "../Module.ts"
import * as SagaToy from "./SagaToy.ts"

const starter = Layer.scopedDiscard(Effect.gen(function*() {
  const engine = yield* WorkflowEngine.WorkflowEngine
  const file = process.env.TOY_START
  if (!file) return
  yield* Effect.forkScoped(Effect.gen(function*() {
    const lines = fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "") : []
    yield* Effect.forEach(lines, (line) => {
      const [id, failAt] = line.trim().split(":")
      return SagaToy.ToySaga.execute({ id: id!, failAt: failAt ?? null, flakyCompensations: 0 }, { discard: true })
    }, { discard: true })
  }).pipe(
    Effect.provideService(WorkflowEngine.WorkflowEngine, engine),
    Effect.catchAllCause((cause) => Effect.logWarning("toy: could not start sagas", cause)),
    Effect.repeat(Schedule.spaced("100 millis"))
  ))
}))

export const HostedToy = Module.make({
  client: SagaToy.ToyClient,
  handlers: Layer.merge(SagaToy.SagaToyModule.handlers, starter),
  workflows: SagaToy.SagaToyModule.workflows
})

Cli.main([HostedToy])
