/**
 * A bulkhead for one dependency: at most `maxConcurrent` calls run at once (Effect's Semaphore),
 * at most `maxQueue` more wait their turn, and any call beyond those fails at once, unrun, with
 * `CallError` NotSent/BulkheadFull. A dependency that stops answering then holds only its own
 * share of the caller's fibers and memory, never all of them.
 *
 * A waiting call waits no longer than its deadline, then fails NotSent (reason Deadline: it never
 * ran); an interrupted call gives back its place in the queue or its permit.
 */
import { Effect } from "effect"
import { CallError } from "../transport/CallError.ts"
import * as Deadline from "../transport/Deadline.ts"
import type { Call } from "./Call.ts"

export interface Options {
  /** Calls running at once. */
  readonly maxConcurrent: number
  /** Calls waiting for a turn; more fail at once. */
  readonly maxQueue: number
}

export interface Snapshot {
  readonly key: string
  /** Calls running now. */
  readonly inFlight: number
  /** Calls waiting for a turn. */
  readonly queued: number
  readonly maxConcurrent: number
  readonly maxQueue: number
}

export interface Bulkhead {
  readonly key: string
  readonly options: Options
  readonly run: <A, E, R>(info: Call, call: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CallError, R>
  readonly snapshot: Effect.Effect<Snapshot>
}

export const make = (key: string, options: Options, onRejected: Effect.Effect<void> = Effect.void): Bulkhead => {
  const semaphore = Effect.unsafeMakeSemaphore(options.maxConcurrent)
  // Counted in Effect.sync steps: each change is atomic on the one thread that runs fibers.
  let admitted = 0
  let inFlight = 0

  const full = (info: Call) =>
    new CallError({
      module: info.module,
      rpc: info.name,
      kind: "NotSent",
      reason: "BulkheadFull",
      message: `${info.name} was not sent: ${key} has ${options.maxConcurrent} calls running and ${options.maxQueue} waiting`
    })

  const late = (info: Call) =>
    new CallError({
      module: info.module,
      rpc: info.name,
      kind: "NotSent",
      reason: "Deadline",
      message: `${info.name} was not sent: its deadline passed while it waited for one of ${key}'s ${options.maxConcurrent} places`
    })

  const run = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Effect.suspend((): Effect.Effect<A, E | CallError, R> => {
      if (admitted >= options.maxConcurrent + options.maxQueue) return Effect.zipRight(onRejected, Effect.fail(full(info)))
      // A call that must wait waits no longer than its deadline (it is then NotSent: it never ran).
      const waits = admitted >= options.maxConcurrent
      admitted++
      const turn = waits ? Deadline.enforce(semaphore.take(1), () => late(info)) : semaphore.take(1)
      // One region: the place is given back however the call ends, also when interrupted while
      // it waits for a permit (take is interruptible and leaves nothing behind).
      return Effect.uninterruptibleMask((restore) =>
        Effect.onExit(
          restore(turn).pipe(
            Effect.zipRight(Effect.suspend(() => {
              inFlight++
              return Effect.onExit(restore(call), () => {
                inFlight--
                return semaphore.release(1)
              })
            }))
          ),
          () => Effect.sync(() => void admitted--)
        )
      )
    })

  const snapshot = Effect.sync((): Snapshot => ({
    key,
    inFlight,
    queued: admitted - inFlight,
    maxConcurrent: options.maxConcurrent,
    maxQueue: options.maxQueue
  }))

  return { key, options, run, snapshot }
}
