/**
 * A circuit breaker for one target (a module, later one instance of it: the key is any string,
 * issue 14 keys by instance URL). Effect has no breaker, so this one is written here, on
 * Effect's Clock (tests drive it with TestClock) and Metric (Resilience metrics, Policy.ts).
 *
 * - **Closed**: calls pass. Each finished call is recorded in a sliding window (the last
 *   `windowSize` calls within the last `windowDuration`). Once the window holds at least
 *   `minimumCalls`, it opens when the failure rate reaches `failureRate`, or the share of calls
 *   slower than `slowCall` reaches `slowCallRate`.
 * - **Open**: calls fail at once, unrun, with `CallError` NotSent/BreakerOpen whose
 *   `retryAfterMs` is the time to the next probe. After `openFor` the next call finds it
 *   half-open.
 * - **HalfOpen**: at most `halfOpenProbes` calls (probes) pass, each bounded by `probeTimeout`
 *   so that a probe stuck on a frozen peer cannot hold the breaker half-open; the others fail at
 *   once like an open breaker. A failed probe opens it again; once `halfOpenProbes` probes have
 *   succeeded it closes with an empty window.
 *
 * What counts as a failure: the transport's failures (`CallError`, except what this process held
 * back itself: this breaker's and a bulkhead's refusals, which say nothing of the peer) and
 * timeouts. The callee's typed
 * domain errors and defects are answers: the peer works. A call interrupted by its caller counts
 * neither way.
 *
 * State lives in plain variables changed only inside `Effect.sync`: each decision is one
 * synchronous step, so it is atomic without a Ref, and the window is a ring buffer updated in
 * place rather than an immutable copy per call (the policies must cost little per call).
 */
import { Cause, Clock, Context, Duration, Effect, Exit } from "effect"
import * as CallErrors from "../transport/CallError.ts"
import { CallError } from "../transport/CallError.ts"
import { continuations } from "../transport/Client.ts"
import type { Call } from "./Call.ts"

export type State = "Closed" | "Open" | "HalfOpen"

export interface Options {
  /** The window holds at most this many of the latest calls... */
  readonly windowSize: number
  /** ...made within this long. */
  readonly windowDuration: Duration.Duration
  /** Rates are judged only once the window holds this many calls. */
  readonly minimumCalls: number
  /** Opens when this share (0-1] of the window's calls failed. */
  readonly failureRate: number
  /** A call that took at least this long is slow. */
  readonly slowCall: Duration.Duration
  /** Opens when this share (0-1] of the window's calls were slow. */
  readonly slowCallRate: number
  /** How long it stays open before it lets probes through. */
  readonly openFor: Duration.Duration
  /** Probes let through while half-open; this many successes close it. */
  readonly halfOpenProbes: number
  /** The longest a probe may take before it counts as failed. */
  readonly probeTimeout: Duration.Duration
}

/** One change of state, for metrics, logs and tests. */
export interface Transition {
  readonly key: string
  readonly from: State
  readonly to: State
  /** Clock millis. */
  readonly at: number
  /** Why, in a few words ("failure rate 60% of 10 calls"). */
  readonly reason: string
}

/** What the breaker holds now, for the admin view. */
export interface Snapshot {
  readonly key: string
  readonly state: State
  /** Calls in the window (closed), and how many of them failed or were slow. */
  readonly calls: number
  readonly failures: number
  readonly slow: number
  /** Probes running now (half-open). */
  readonly probes: number
  /** While open: milliseconds to the next probe. */
  readonly retryAfterMs: number | undefined
}

export interface CircuitBreaker {
  readonly key: string
  readonly options: Options
  /** Runs `call` through the breaker: refused at once while open. */
  readonly run: <A, E, R>(info: Call, call: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CallError, R>
  /**
   * For a caller that fuses the breaker with its other guards into one handler per call
   * (Policy.protect): the generation a call is let through in while the breaker is closed, or
   * -1 when it is not (then use `run`). Nothing else to do before the call.
   */
  readonly closed: () => number
  /**
   * Judges a call let through by `closed` once it ended: what to announce when the verdict
   * changed the state, else `undefined` (no effect at all for nearly every call).
   */
  readonly judgeClosed: (admitted: number, module: string, exit: Exit.Exit<unknown, unknown>, start: number, end: number) => Effect.Effect<void> | undefined
  readonly snapshot: Effect.Effect<Snapshot>
  /**
   * Whether a call made at `now` (Clock millis) would be let through, without changing anything:
   * closed, open for long enough to let a probe through, or half-open with room for a probe.
   * A balancer (Balancer.ts) skips an instance whose breaker would refuse.
   */
  readonly admits: (now: number) => boolean
  /** While it refuses: milliseconds from `now` until it may let a call through. */
  readonly retryAfterMs: (now: number) => number
}

/**
 * Whether a call to `module` ended saying the peer is failing: a transport failure or a timeout
 * of that call. A CallError of a call the callee made itself (it dies of it and the error comes
 * back as a defect naming the other module) says nothing of this peer.
 */
export const isFailure = <A, E>(module: string, exit: Exit.Exit<A, E>): boolean =>
  Exit.isFailure(exit) &&
  [...Cause.failures(exit.cause), ...Cause.defects(exit.cause)].some((error) =>
    CallErrors.is(error) && error.module === module && !heldBack(error)
  )

/** A call this process held back (breaker, bulkhead, or its deadline passed while it waited). */
const heldBack = (error: CallError): boolean =>
  error.reason === "BreakerOpen" || error.reason === "BulkheadFull" || (error.kind === "NotSent" && error.reason === "Deadline")

/** The latest calls: a ring buffer with running counts. */
class Window {
  private readonly at: Float64Array
  private readonly flags: Uint8Array
  private head = 0
  size = 0
  failures = 0
  slow = 0

  constructor(private readonly capacity: number, private readonly duration: number) {
    this.at = new Float64Array(capacity)
    this.flags = new Uint8Array(capacity)
  }

  clear() {
    this.head = 0
    this.size = this.failures = this.slow = 0
  }

  private dropOldest() {
    const tail = (this.head - this.size + this.capacity) % this.capacity
    const flag = this.flags[tail]!
    if (flag & 1) this.failures--
    if (flag & 2) this.slow--
    this.size--
  }

  /** Forgets calls older than the window's duration. */
  expire(now: number) {
    while (this.size > 0 && this.at[(this.head - this.size + this.capacity) % this.capacity]! <= now - this.duration) {
      this.dropOldest()
    }
  }

  add(now: number, failed: boolean, slow: boolean) {
    this.expire(now)
    if (this.size === this.capacity) this.dropOldest()
    this.at[this.head] = now
    this.flags[this.head] = (failed ? 1 : 0) | (slow ? 2 : 0)
    if (failed) this.failures++
    if (slow) this.slow++
    this.head = (this.head + 1) % this.capacity
    this.size++
  }
}

const percent = (share: number) => `${Math.round(share * 100)}%`

/**
 * A breaker for `key`. `onTransition` runs after each change of state (metrics, logs, tests
 * recording the exact sequence).
 */
export const make = (
  key: string,
  options: Options,
  onTransition: (transition: Transition) => Effect.Effect<void> = () => Effect.void
): CircuitBreaker => {
  const window = new Window(Math.max(1, options.windowSize), Duration.toMillis(options.windowDuration))
  const openForMs = Duration.toMillis(options.openFor)
  const slowMs = Duration.toMillis(options.slowCall)
  const probeTimeoutMs = Duration.toMillis(options.probeTimeout)

  let state: State = "Closed"
  /** Bumped at each change: a call's verdict counts only in the state it was let through in. */
  let generation = 0
  let openedAt = 0
  let probes = 0
  let probeSucceeded = 0
  let lastProbeAt = 0

  const move = (to: State, now: number, reason: string, out: Array<Transition>) => {
    out.push({ key, from: state, to, at: now, reason })
    state = to
    generation++
    if (to === "Open") openedAt = now
    if (to === "HalfOpen") probes = probeSucceeded = 0
    if (to === "Closed") window.clear()
  }

  /** Open → HalfOpen once `openFor` has passed (checked on each use). */
  const advance = (now: number, out: Array<Transition>) => {
    if (state === "Open" && now >= openedAt + openForMs) move("HalfOpen", now, `open for ${Duration.format(options.openFor)}`, out)
  }

  const announce = (transitions: ReadonlyArray<Transition>) =>
    transitions.length === 0 ? Effect.void : Effect.forEach(transitions, onTransition, { discard: true })

  type Admission =
    | { readonly _tag: "Pass"; readonly generation: number; readonly probe: boolean }
    | { readonly _tag: "Refuse"; readonly retryAfterMs: number }

  const admit = (now: number, out: Array<Transition>): Admission => {
    advance(now, out)
    switch (state) {
      case "Closed":
        return { _tag: "Pass", generation, probe: false }
      case "Open":
        return { _tag: "Refuse", retryAfterMs: Math.max(0, openedAt + openForMs - now) }
      case "HalfOpen":
        if (probes + probeSucceeded < options.halfOpenProbes) {
          probes++
          lastProbeAt = now
          return { _tag: "Pass", generation, probe: true }
        }
        // The probes in flight decide within their timeout.
        return { _tag: "Refuse", retryAfterMs: Math.max(0, lastProbeAt + probeTimeoutMs - now) }
    }
  }

  const judge = (admitted: number, probe: boolean, outcome: "failed" | "ok" | "interrupted", tookMs: number, now: number, out: Array<Transition>) => {
    if (admitted !== generation) return
    if (probe) {
      probes--
      if (outcome === "interrupted") return
      if (outcome === "failed") return move("Open", now, "a probe failed", out)
      probeSucceeded++
      if (probeSucceeded >= options.halfOpenProbes) move("Closed", now, `${probeSucceeded} probe(s) succeeded`, out)
      return
    }
    if (outcome === "interrupted" || state !== "Closed") return
    window.add(now, outcome === "failed", tookMs >= slowMs)
    if (window.size < options.minimumCalls) return
    const failureShare = window.failures / window.size
    const slowShare = window.slow / window.size
    if (failureShare >= options.failureRate) {
      move("Open", now, `failure rate ${percent(failureShare)} of ${window.size} calls`, out)
    } else if (slowShare >= options.slowCallRate) {
      move("Open", now, `slow-call rate ${percent(slowShare)} of ${window.size} calls`, out)
    }
  }

  const probeTimedOut = (info: Call) => () =>
    new CallError({
      module: info.module,
      rpc: info.name,
      kind: "TimedOut",
      reason: "Deadline",
      message: `${info.name}: the breaker's probe of ${key} took longer than ${Duration.format(options.probeTimeout)}`
    })

  /**
   * A call let through while closed (nearly every call): judged when it ends, in the
   * uninterruptible region of `run` so that an interrupted call is judged too, with no effect
   * made unless the verdict changes the state.
   */
  const closed = () => (state === "Closed" ? generation : -1)

  const judgeClosed = (admitted: number, module: string, exit: Exit.Exit<unknown, unknown>, start: number, end: number) => {
    const outcome = isFailure(module, exit)
      ? "failed"
      : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
      ? "interrupted"
      : "ok"
    const changes: Array<Transition> = []
    judge(admitted, false, outcome, end - start, end, changes)
    return changes.length === 0 ? undefined : announce(changes)
  }

  const closedCall = <A, E, R>(
    info: Call,
    restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
    call: Effect.Effect<A, E, R>,
    clock: Clock.Clock,
    start: number
  ): Effect.Effect<A, E | CallError, R> => {
    const admitted = generation
    return Effect.matchCauseEffect(
      restore(call),
      continuations(
        (value: A) => {
          const announced = judgeClosed(admitted, info.module, Exit.void, start, clock.unsafeCurrentTimeMillis())
          return announced === undefined ? Effect.succeed(value) : Effect.as(announced, value)
        },
        (cause: Cause.Cause<E>) => {
          const announced = judgeClosed(admitted, info.module, Exit.failCause(cause), start, clock.unsafeCurrentTimeMillis())
          return announced === undefined ? Effect.failCause(cause) : Effect.zipRight(announced, Effect.failCause(cause))
        }
      )
    )
  }

  // Runs on every call: the clock is read synchronously, and a call let through while closed
  // that changes no state adds one handler of its exit (`closedCall`).
  const run = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Effect.withFiberRuntime((fiber) => {
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      const start = clock.unsafeCurrentTimeMillis()
      if (state === "Closed") return Effect.uninterruptibleMask((restore) => closedCall(info, restore, call, clock, start))
      const out: Array<Transition> = []
      const admission = admit(start, out)
      if (admission._tag === "Refuse") {
        const refused = Effect.fail(
          new CallError({
            module: info.module,
            rpc: info.name,
            kind: "NotSent",
            reason: "BreakerOpen",
            message: `${info.name} was not sent: the circuit breaker of ${key} is ${state === "Open" ? "open" : "half-open"}`,
            retryAfterMs: admission.retryAfterMs
          })
        )
        return out.length === 0 ? refused : Effect.zipRight(announce(out), refused)
      }
      const attempt: Effect.Effect<A, E | CallError, R> = admission.probe
        ? Effect.timeoutFail(call, { duration: options.probeTimeout, onTimeout: probeTimedOut(info) })
        : call
      const judged = Effect.onExit(attempt, (exit) => {
        const end = clock.unsafeCurrentTimeMillis()
        const changes: Array<Transition> = []
        const outcome = isFailure(info.module, exit)
          ? "failed"
          : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
          ? "interrupted"
          : "ok"
        judge(admission.generation, admission.probe, outcome, end - start, end, changes)
        return announce(changes)
      })
      return out.length === 0 ? judged : Effect.zipRight(announce(out), judged)
    })

  const snapshot = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const out: Array<Transition> = []
    advance(now, out)
    window.expire(now)
    const shot: Snapshot = {
      key,
      state,
      calls: window.size,
      failures: window.failures,
      slow: window.slow,
      probes,
      retryAfterMs: state === "Open" ? Math.max(0, openedAt + openForMs - now) : undefined
    }
    return Effect.as(announce(out), shot)
  })

  const admits = (now: number) =>
    state === "Closed" ||
    (state === "Open" ? now >= openedAt + openForMs : probes + probeSucceeded < options.halfOpenProbes)

  const retryAfterMs = (now: number) =>
    state === "Open" ? Math.max(0, openedAt + openForMs - now) : state === "HalfOpen" ? Math.max(0, lastProbeAt + probeTimeoutMs - now) : 0

  return { key, options, run, closed, judgeClosed, snapshot, admits, retryAfterMs }
}
