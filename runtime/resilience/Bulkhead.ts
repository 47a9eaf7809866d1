/**
 * A bulkhead for one dependency: at most `maxConcurrent` calls run at once (Effect's Semaphore),
 * at most `maxQueue` more wait their turn, and any call beyond those fails at once, unrun, with
 * `CallError` NotSent/BulkheadFull. A dependency that stops answering then holds only its own
 * share of the caller's fibers and memory, never all of them.
 *
 * A waiting call waits for as long as its deadline allows (the deadline interceptor outside
 * interrupts it); an interrupted call gives back its place in the queue or its permit.
 */
import { Effect } from "effect"
import { CallError } from "../transport/CallError.ts"
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

  const run = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Effect.suspend((): Effect.Effect<A, E | CallError, R> => {
      if (admitted >= options.maxConcurrent + options.maxQueue) return Effect.zipRight(onRejected, Effect.fail(full(info)))
      admitted++
      const running = Effect.acquireUseRelease(
        Effect.sync(() => void inFlight++),
        () => call,
        () => Effect.sync(() => void inFlight--)
      )
      return semaphore.withPermits(1)(running).pipe(Effect.ensuring(Effect.sync(() => void admitted--)))
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
