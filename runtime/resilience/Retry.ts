/**
 * Retries a call that failed for a reason worth trying again, only when trying again is harmless,
 * with exponential backoff and full jitter (an Effect Schedule):
 *
 * - **worth trying again**: the transport's failures (`CallError`): not sent (except when this
 *   process's own breaker or bulkhead held it back: retrying those would only add load), outcome
 *   unknown (the connection was lost), and an attempt's own timeout while the call's deadline
 *   still has time. Never the callee's domain errors or defects: they are answers;
 * - **harmless**: the contract marks the rpc idempotent, or the call carries an idempotency key
 *   (`CallInfo.idempotent`);
 * - **bounded**: at most `maxAttempts` attempts, retries begun within `maxTotal` of the first,
 *   and never a wait that would end past the caller's deadline (Deadline.ts);
 * - **full jitter**: the n-th wait is drawn uniformly from [0, min(maxDelay, baseDelay × 2^n)],
 *   so that callers failed by the same outage do not come back in step.
 */
import { Clock, Context, Duration, Effect, Random, Schedule } from "effect"
import * as CallErrors from "../transport/CallError.ts"
import type { Call } from "./Call.ts"
import * as Deadline from "../transport/Deadline.ts"

export interface Options {
  /** Attempts in all, the first included (1: no retry). */
  readonly maxAttempts: number
  /** The ceiling of the first wait; each further wait's ceiling doubles... */
  readonly baseDelay: Duration.Duration
  /** ...up to this. */
  readonly maxDelay: Duration.Duration
  /** No retry begins later than this after the first attempt began. */
  readonly maxTotal: Duration.Duration
}

/**
 * Whether `error`, from a call to `module`, is worth another attempt (the call's deadline still
 * has time, for a timeout).
 */
export const isRetryable = (module: string) => (error: unknown): Effect.Effect<boolean> => {
  // A CallError of a call the callee made itself is the callee's answer, not this call's failure.
  if (!CallErrors.is(error) || error.module !== module) return Effect.succeed(false)
  switch (error.kind) {
    case "NotSent":
      // Not what this process held back itself: its breaker, its bulkhead, or a deadline that
      // passed while the call waited for a place.
      return Effect.succeed(error.reason !== "BreakerOpen" && error.reason !== "BulkheadFull" && error.reason !== "Deadline")
    case "OutcomeUnknown":
      return Effect.succeed(true)
    case "TimedOut":
      // An attempt's own timeout, not the call's deadline: time is left for another.
      return Effect.map(Deadline.remaining, (left) => left > 0)
  }
}

/** The waits between attempts: full jitter, capped in number, in total time and by the deadline. */
export const schedule = (options: Options) => {
  const base = Duration.toMillis(options.baseDelay)
  const max = Duration.toMillis(options.maxDelay)
  return Schedule.recurs(Math.max(0, options.maxAttempts - 1)).pipe(
    Schedule.mapEffect((retry) => Random.nextRange(0, Math.min(max, base * 2 ** retry))),
    Schedule.addDelay((wait) => Duration.millis(wait)),
    Schedule.checkEffect((_, wait) => Effect.map(Deadline.remaining, (left) => left > wait)),
    Schedule.upTo(options.maxTotal)
  )
}

/**
 * Runs `call`, again on a retryable failure when `info` says it is idempotent. `onFailure` sees
 * every failed attempt first (the policy's metrics); `onRetry` runs before each further attempt.
 * The retries run under the call's whole deadline, `deadlineMs` after the first attempt began
 * (never past the caller's): the first attempt is bounded by its own timeout, which the policy
 * keeps within it, so the deadline is set only once a retry needs it, which keeps a call that
 * succeeds at once free of any write to its fiber.
 */
export const run = <A, E, R>(
  options: Options,
  info: Call,
  call: Effect.Effect<A, E, R>,
  hooks: {
    readonly onRetry?: Effect.Effect<void>
    readonly onFailure?: (error: E) => Effect.Effect<void>
    readonly deadlineMs?: number
  } = {}
): Effect.Effect<A, E, R> => {
  if (!info.idempotent || options.maxAttempts <= 1) return hooks.onFailure ? Effect.tapError(call, hooks.onFailure) : call
  // The first attempt runs bare: the schedule is built only once one has failed (a call that
  // succeeds pays one catch frame). Its failure is handed to Effect.retry as the first outcome.
  return Effect.withFiberRuntime((fiber) => {
    const started = Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
    return Effect.catchAll(call, (failure) => afterFailure(options, info, call, hooks, failure, started, fiber.getFiberRef(Deadline.current)))
  })
}

/**
 * What `run` does once the first attempt of `call` failed with `failure`: observes it, then tries
 * again while it is worth it, under the whole deadline counted from `started` (never past
 * `callerDeadline`, the deadline in force when the call began). For a caller that ran the first
 * attempt itself (Policy.protect); `info` must say the call is idempotent.
 */
export const afterFailure = <A, E, R>(
  options: Options,
  info: Call,
  call: Effect.Effect<A, E, R>,
  hooks: {
    readonly onRetry?: Effect.Effect<void>
    readonly onFailure?: (error: E) => Effect.Effect<void>
    readonly deadlineMs?: number
  },
  failure: E,
  started: number,
  callerDeadline: number
): Effect.Effect<A, E, R> => {
  const { deadlineMs = Number.POSITIVE_INFINITY, onFailure, onRetry = Effect.void } = hooks
  const retryable = isRetryable(info.module)
  const observed = onFailure ? Effect.tapError(call, onFailure) : call
  return Effect.flatMap(onFailure ? Effect.zipRight(onFailure(failure), retryable(failure)) : retryable(failure), (again) => {
    if (!again) return Effect.fail(failure)
    let replayed = false
    const attempt = Effect.suspend(() => {
      if (replayed) return Effect.zipRight(onRetry, observed)
      replayed = true
      return Effect.fail(failure)
    })
    const retries = Effect.retry(attempt, { schedule: schedule(options), while: retryable })
    const deadline = started + deadlineMs
    return deadline < callerDeadline ? Effect.locally(retries, Deadline.current, deadline) : retries
  })
}
