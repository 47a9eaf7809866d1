import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import { Deferred, Effect, Fiber, TestClock } from "effect"
import type { CallInfo } from "../transport/Client.ts"
import * as Deadline from "../transport/Deadline.ts"
import * as Bulkhead from "./Bulkhead.ts"

const info: CallInfo = {
  module: "inventory",
  tag: "get",
  name: "inventory.get",
  rpc: Rpc.make("get") as unknown as Rpc.AnyWithProps,
  idempotent: true,
  discard: false
}

describe("Bulkhead", () => {
  it.effect("runs maxConcurrent calls, queues maxQueue more, and refuses the rest at once, unrun", () =>
    Effect.gen(function*() {
      let rejected = 0
      const bulkhead = Bulkhead.make("inventory", { maxConcurrent: 2, maxQueue: 1 }, Effect.sync(() => void rejected++))
      const gate = yield* Deferred.make<void>()
      let started = 0
      const held = Effect.zipRight(Effect.sync(() => void started++), Deferred.await(gate))
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(bulkhead.run(info, held)))
      while (started < 2) yield* Effect.yieldNow()
      expect(yield* bulkhead.snapshot).toMatchObject({ inFlight: 2, queued: 1 })

      let ran = false
      const refused = yield* Effect.flip(bulkhead.run(info, Effect.sync(() => (ran = true))))
      expect(ran).toBe(false)
      expect(refused).toMatchObject({ _tag: "CallError", kind: "NotSent", reason: "BulkheadFull" })
      expect(rejected).toBe(1)
      expect(started).toBe(2)

      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(fibers, Fiber.join)
      expect(started).toBe(3)
      expect(yield* bulkhead.snapshot).toMatchObject({ inFlight: 0, queued: 0 })
    }))

  it.effect("gives back the place of a call interrupted while it waits or runs", () =>
    Effect.gen(function*() {
      const bulkhead = Bulkhead.make("inventory", { maxConcurrent: 1, maxQueue: 1 })
      const running = yield* Effect.fork(bulkhead.run(info, Effect.never))
      const waiting = yield* Effect.fork(bulkhead.run(info, Effect.never))
      while ((yield* bulkhead.snapshot).queued < 1) yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      yield* Fiber.interrupt(running)
      expect(yield* bulkhead.snapshot).toMatchObject({ inFlight: 0, queued: 0 })
      expect(yield* bulkhead.run(info, Effect.succeed("served"))).toBe("served")
    }))

  it.effect("a call that waits for a place fails NotSent when its deadline passes, unrun", () =>
    Effect.gen(function*() {
      const bulkhead = Bulkhead.make("inventory", { maxConcurrent: 1, maxQueue: 1 })
      const running = yield* Effect.fork(bulkhead.run(info, Effect.never))
      let ran = false
      const waiting = yield* Effect.fork(bulkhead.run(info, Effect.sync(() => (ran = true))).pipe(Deadline.within("2 seconds")))
      yield* TestClock.adjust("2 seconds")
      const exit = yield* Fiber.await(waiting)
      expect(ran).toBe(false)
      expect(exit).toMatchObject({ cause: { error: { kind: "NotSent", reason: "Deadline" } } })
      expect(yield* bulkhead.snapshot).toMatchObject({ inFlight: 1, queued: 0 })
      yield* Fiber.interrupt(running)
    }))
})
