/**
 * A bulkhead for one dependency: at most `maxConcurrent` calls run at once,
 * at most `maxQueue` more wait their turn, and any call beyond those fails at once, unrun, with
 * `CallError` NotSent/BulkheadFull. A dependency that stops answering then holds only its own
 * share of the caller's fibers and memory, never all of them.
 *
 * A waiting call waits no longer than its deadline, then fails NotSent (reason Deadline: it never
 * ran); an interrupted call gives back its place in the queue or its permit.
 */
import { type Cause, Effect } from "effect"
import { continuations } from "../transport/Client.ts"
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
  /**
   * For a caller that fuses the bulkhead with its other guards (Policy.protect): takes a free
   * place if there is one (`false`: none, use `run`). A place taken must be given back with
   * `leave` however the call ends.
   */
  readonly enter: () => boolean
  readonly leave: () => void
  readonly snapshot: Effect.Effect<Snapshot>
}

export const make = (key: string, options: Options, onRejected: Effect.Effect<void> = Effect.void): Bulkhead => {
  // Written by hand rather than over Effect's Semaphore: a call that finds a free place (nearly
  // every call) must cost next to nothing on the remote path (its policies may take 5 % of it,
  // issue 11), and taking and giving back a Semaphore permit in an uninterruptible region cost
  // about 8 µs a call. Here a free place is a counter; only a call that must wait suspends, on a
  // FIFO queue of the callbacks that resume it. All of it runs on the one thread that runs fibers.
  let inFlight = 0
  /** The calls waiting for a place, oldest first: each is resumed with `true` when given one. */
  const waiting = new Set<(placed: boolean) => void>()

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

  /** A call ended: its place goes to the oldest waiting call, else it is free again. */
  const release = () => {
    for (const resume of waiting) {
      waiting.delete(resume)
      return resume(true)
    }
    inFlight--
  }

  /** Waits for a place (handed over by `release`), at most until the deadline in force. */
  const turn = (info: Call) =>
    Deadline.enforce(
      Effect.async<void>((resume) => {
        const placed = () => resume(Effect.void)
        waiting.add(placed)
        // Given up (the deadline, an interruption): it leaves the queue, or, if a place was
        // handed to it meanwhile, hands that place on.
        return Effect.sync(() => {
          if (!waiting.delete(placed)) release()
        })
      }),
      () => late(info)
    )

  /**
   * `call` in its place, which is given back however it ends: in the uninterruptible region of
   * `run`, so the handlers below run even when the call is interrupted (what `Effect.onExit`
   * does, without a region and an effect of its own per call).
   */
  const placed = <A, E, R>(restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>, call: Effect.Effect<A, E, R>) =>
    Effect.matchCauseEffect(
      restore(call),
      continuations(
        (value: A) => {
          release()
          return Effect.succeed(value)
        },
        (cause: Cause.Cause<E>) => {
          release()
          return Effect.failCause(cause)
        }
      )
    )

  const run = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.suspend((): Effect.Effect<A, E | CallError, R> => {
        if (inFlight < options.maxConcurrent) {
          inFlight++
          return placed(restore, call)
        }
        if (waiting.size >= options.maxQueue) return Effect.zipRight(onRejected, Effect.fail(full(info)))
        // The place a waiting call is handed keeps `inFlight` as it is: it passes from one call
        // to the next.
        return Effect.zipRight(restore(turn(info)), placed(restore, call))
      })
    )
  const enter = () => {
    if (inFlight >= options.maxConcurrent) return false
    inFlight++
    return true
  }

  const snapshot = Effect.sync((): Snapshot => ({
    key,
    inFlight,
    queued: waiting.size,
    maxConcurrent: options.maxConcurrent,
    maxQueue: options.maxQueue
  }))

  return { key, options, run, enter, leave: release, snapshot }
}
