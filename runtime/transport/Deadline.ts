/**
 * The deadline of the current work: an absolute time (Clock millis) past which nobody waits for
 * its result, held in a FiberRef so that it follows the work into every call it makes (as gRPC
 * deadlines do). The gateway gives each request one (TESSERA_REQUEST_TIMEOUT); a call carries
 * what is left of it to the callee (`d` in the call frame, Wire.ts), which runs the handler under
 * it, so the callee never works past it and its own calls get what is left.
 *
 * `Infinity` means no deadline. A deadline only ever shortens: `within` never extends the one in
 * force, so no layer can give a callee more time than its caller has.
 */
import { Clock, Duration, Effect, FiberRef } from "effect"
import { dual } from "effect/Function"

/** The absolute deadline (Clock millis) of the current work; `Infinity` for none. */
export const current: FiberRef.FiberRef<number> = FiberRef.unsafeMake(Number.POSITIVE_INFINITY)

/** The milliseconds left before the deadline (`Infinity` when there is none; 0 once it passed). */
export const remaining: Effect.Effect<number> = Effect.flatMap(
  FiberRef.get(current),
  (deadline) =>
    deadline === Number.POSITIVE_INFINITY
      ? Effect.succeed(deadline)
      : Effect.map(Clock.currentTimeMillis, (now) => Math.max(0, deadline - now))
)

/**
 * Runs `self` with a deadline `duration` from now, or the one in force if that comes first.
 */
export const within: {
  (duration: Duration.DurationInput): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, duration: Duration.DurationInput): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, duration: Duration.DurationInput) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => at(self, now + Duration.toMillis(duration))))

/** Runs `self` with the absolute deadline `deadline`, or the one in force if that comes first. */
export const at: {
  (deadline: number): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, deadline: number): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, deadline: number) =>
  Effect.flatMap(
    FiberRef.get(current),
    (inForce) => deadline < inForce ? Effect.locally(self, current, deadline) : self
  ))

/**
 * Runs `self` until the deadline in force passes; then interrupts it and fails with what
 * `onExpired` makes. Without a deadline, `self` as it is.
 */
export const enforce: {
  <E2>(onExpired: () => E2): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | E2, R>
  <A, E, R, E2>(self: Effect.Effect<A, E, R>, onExpired: () => E2): Effect.Effect<A, E | E2, R>
} = dual(2, <A, E, R, E2>(self: Effect.Effect<A, E, R>, onExpired: () => E2) =>
  Effect.flatMap(remaining, (left): Effect.Effect<A, E | E2, R> =>
    left === Number.POSITIVE_INFINITY
      ? self
      : left <= 0
      ? Effect.fail(onExpired())
      : Effect.timeoutFail(self, { duration: left, onTimeout: onExpired })))
