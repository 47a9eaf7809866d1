/**
 * One policy per dependency: what a call to another module (or an outside system) may cost, and
 * how it is protected, composed as interceptors (transport/Client.ts), outermost first:
 *
 *     deadline (the whole call) → retry → circuit breaker → bulkhead → timeout (one attempt)
 *
 * - the **deadline** bounds the call, retries included, and never extends the caller's
 *   (Deadline.ts): the callee gets what is left;
 * - **retry** (Retry.ts) tries again only idempotent calls that failed in transport, within the
 *   deadline, and so never while the breaker is open (its refusal is not retryable);
 * - the **breaker** (CircuitBreaker.ts) sees every attempt, so retries count against it;
 * - the **bulkhead** (Bulkhead.ts) bounds the attempts in flight, inside the breaker so that an
 *   open breaker refuses before a call takes a place;
 * - the **timeout** bounds one attempt, and shortens the deadline the attempt carries to the
 *   callee, so the callee stops working on an attempt its caller gave up.
 *
 * In process a module call has nothing to survive: no retry, breaker or bulkhead, and no deadline
 * of its own: the caller's applies, as each transport enforces it (Client.ts), failing with the
 * same `CallError`; one of its own would add a timer to every call that waits.
 *
 * The values come from `defaults`, then what the called module declares for its callers
 * (`Module.make({ resilience })`), then the environment: `TESSERA_CALL_TIMEOUT` and the rest for
 * every target, `TESSERA_<TARGET>_CALL_TIMEOUT` for one (Settings.ts).
 */
import { HttpClient, HttpClientError } from "@effect/platform"
import { Cause, Clock, Context, Duration, Effect, Either, Exit, Metric, MetricLabel, Option } from "effect"
import * as Settings from "../Settings.ts"
import { CallError } from "../transport/CallError.ts"
import * as CallErrors from "../transport/CallError.ts"
import * as Client from "../transport/Client.ts"
import type { Interceptor } from "../transport/Client.ts"
import * as Deadline from "../transport/Deadline.ts"
import * as Idempotent from "../transport/Idempotent.ts"
import type * as Balancer from "./Balancer.ts"
import * as Bulkhead from "./Bulkhead.ts"
import type { Call } from "./Call.ts"
import * as CircuitBreaker from "./CircuitBreaker.ts"
import * as Retry from "./Retry.ts"

export interface Policy {
  /** One attempt. */
  readonly timeout: Duration.Duration
  /** The whole call, retries included. */
  readonly deadline: Duration.Duration
  readonly retry: Retry.Options
  readonly breaker: CircuitBreaker.Options
  readonly bulkhead: Bulkhead.Options
}

/** What a module may declare for its callers: any part of a policy. */
export type Defaults = { readonly [K in keyof Policy]?: Policy[K] extends Duration.Duration ? Duration.DurationInput : Partial<Policy[K]> }

/**
 * The runtime's defaults (ARCHITECTURE.md, Resilience, says why each is what it is). The values
 * the environment can set mirror Settings.ts's defaults; the rest are fixed here.
 */
export const defaults: Policy = {
  timeout: Duration.seconds(5),
  deadline: Duration.seconds(10),
  retry: {
    maxAttempts: 3,
    baseDelay: Duration.millis(50),
    maxDelay: Duration.seconds(1),
    maxTotal: Duration.seconds(10)
  },
  breaker: {
    windowSize: 100,
    windowDuration: Duration.seconds(60),
    minimumCalls: 10,
    failureRate: 0.5,
    slowCall: Duration.seconds(2),
    slowCallRate: 1,
    openFor: Duration.seconds(5),
    halfOpenProbes: 1,
    probeTimeout: Duration.seconds(5)
  },
  bulkhead: { maxConcurrent: 64, maxQueue: 256 }
}

/** `base` with `declared`'s parts over it. */
export const withDefaults = (base: Policy, declared: Defaults | undefined): Policy =>
  declared === undefined ? base : {
    timeout: declared.timeout === undefined ? base.timeout : Duration.decode(declared.timeout),
    deadline: declared.deadline === undefined ? base.deadline : Duration.decode(declared.deadline),
    retry: { ...base.retry, ...declared.retry },
    breaker: { ...base.breaker, ...declared.breaker },
    bulkhead: { ...base.bulkhead, ...declared.bulkhead }
  }

/**
 * The policy for calls to `target`: the defaults, then `declared` (the target module's own),
 * then the environment (every target's variable, then the target's own).
 */
export const fromConfig = (target: string, declared?: Defaults) =>
  Effect.gen(function*() {
    const base = withDefaults(defaults, declared)
    /** The target's own value, else the variable for every target if set, else `fallback`. */
    const read = <A>(family: Settings.ResilienceFamily<A>, fallback: A) =>
      Effect.map(
        Effect.all([family.forTarget(target).config, family.explicit]),
        ([own, every]) => Option.getOrElse(Option.orElse(own, () => every), () => fallback)
      )
    const timeout = yield* read(Settings.callTimeout, base.timeout)
    const deadline = yield* read(Settings.callDeadline, base.deadline)
    const retries = yield* read(Settings.callRetries, base.retry.maxAttempts - 1)
    const backoff = yield* read(Settings.callBackoff, base.retry.baseDelay)
    const failureRate = yield* read(Settings.breakerFailureRate, Math.round(base.breaker.failureRate * 100))
    const minimumCalls = yield* read(Settings.breakerMinCalls, base.breaker.minimumCalls)
    const openFor = yield* read(Settings.breakerOpenFor, base.breaker.openFor)
    const slowCall = yield* read(Settings.breakerSlowCall, base.breaker.slowCall)
    const maxConcurrent = yield* read(Settings.bulkheadLimit, base.bulkhead.maxConcurrent)
    const maxQueue = yield* read(Settings.bulkheadQueue, base.bulkhead.maxQueue)
    const policy: Policy = {
      timeout,
      deadline,
      retry: { ...base.retry, maxAttempts: retries + 1, baseDelay: backoff, maxTotal: deadline },
      breaker: {
        ...base.breaker,
        windowSize: Math.max(base.breaker.windowSize, minimumCalls),
        minimumCalls,
        failureRate: failureRate / 100,
        openFor,
        slowCall,
        // A probe gets what an attempt gets.
        probeTimeout: timeout
      },
      bulkhead: { maxConcurrent, maxQueue }
    }
    return policy
  })

// Effect Metrics, labelled by target (named as Prometheus names counters and gauges).

/** 0 closed, 1 half-open, 2 open. */
export const breakerState = Metric.gauge("tessera_breaker_state", {
  description: "circuit breaker state per target: 0 closed, 1 half-open, 2 open"
})
export const breakerTransitions = Metric.counter("tessera_breaker_transitions_total", {
  description: "circuit breaker state changes per target",
  incremental: true
})
export const retries = Metric.counter("tessera_call_retries_total", {
  description: "calls tried again per target",
  incremental: true
})
export const timeouts = Metric.counter("tessera_call_timeouts_total", {
  description: "calls or attempts that ran out of time, per target and scope (attempt or deadline)",
  incremental: true
})
export const rejections = Metric.counter("tessera_call_rejections_total", {
  description: "calls refused unrun by this process's own policy, per target and reason",
  incremental: true
})

/** `metric` with `tags` (a data-first call: the piped form loses the input type). */
const tagged = <M extends Metric.Metric<any, any, any>>(metric: M, tags: Record<string, string>): M =>
  Metric.taggedWithLabels(metric, Object.entries(tags).map(([key, value]) => MetricLabel.make(key, value))) as M

const STATE_VALUE: Record<CircuitBreaker.State, number> = { Closed: 0, HalfOpen: 1, Open: 2 }

/** Metrics and a log line for each breaker transition (of one instance of the target, if given). */
const observeTransition = (target: string, instance?: string) => (t: CircuitBreaker.Transition) =>
  Effect.all([
    Metric.set(tagged(breakerState, instance === undefined ? { target } : { target, instance }), STATE_VALUE[t.to]),
    Metric.increment(tagged(breakerTransitions, instance === undefined ? { target, from: t.from, to: t.to } : { target, instance, from: t.from, to: t.to })),
    (t.to === "Open" ? Effect.logWarning : Effect.logInfo)(`circuit breaker of ${t.key}: ${t.from} → ${t.to} (${t.reason})`).pipe(
      Effect.annotateLogs({ target, breaker: t.key, from: t.from, to: t.to })
    )
  ], { discard: true })

/** Where a dependency is: another process (a module's RPC), an outside system over HTTP, or this process. */
export type Location = "remote" | "http" | "local"

/** One dependency as this process calls it: its policy, and its breaker and bulkhead unless local. */
export interface Dependency {
  readonly target: string
  readonly location: Location
  readonly policy: Policy
  readonly breaker: CircuitBreaker.CircuitBreaker
  readonly bulkhead: Bulkhead.Bulkhead
}

/** What the admin view shows of a dependency. */
export interface DependencyView {
  readonly target: string
  readonly location: Location
  /** None for a module in this process (nothing to break), or one with several instances (a breaker each). */
  readonly breaker: CircuitBreaker.Snapshot | undefined
  readonly bulkhead: Bulkhead.Snapshot | undefined
  readonly policy: Policy
  /** The instances of a module that runs as several (Balancer.ts), each with its breaker. */
  readonly instances: ReadonlyArray<Balancer.InstanceView> | undefined
}

/**
 * The dependencies of one process, by target: one breaker and one bulkhead each, shared by every
 * client of that target. `onTransition` also receives each breaker's changes (tests).
 */
export class Registry {
  private readonly byTarget = new Map<string, Dependency>()
  private readonly locals = new Map<string, Policy>()
  private readonly balancers = new Map<string, Balancer.Balancer>()

  constructor(private readonly onTransition?: (t: CircuitBreaker.Transition) => Effect.Effect<void>) {}

  /** The dependency `target` (remote or HTTP), made with `policy` the first time. */
  dependency(target: string, policy: Policy, location: "remote" | "http" = "remote"): Dependency {
    const found = this.byTarget.get(target)
    if (found) return found
    const observe = observeTransition(target)
    const listener = this.onTransition
    const rejected = Metric.increment(tagged(rejections, { target, reason: "BulkheadFull" }))
    const dependency: Dependency = {
      target,
      location,
      policy,
      breaker: CircuitBreaker.make(target, policy.breaker, listener ? (t) => Effect.zipRight(observe(t), listener(t)) : observe),
      bulkhead: Bulkhead.make(target, policy.bulkhead, rejected)
    }
    this.byTarget.set(target, dependency)
    // The gauge exists from the start (closed), not only after a first transition.
    tagged(breakerState, { target }).unsafeUpdate(STATE_VALUE.Closed, [])
    return dependency
  }

  /**
   * The breaker of the instance `url` of the dependency `target`, with `policy`'s options: its
   * changes are metrics and log lines labelled with the instance too.
   */
  instanceBreaker(target: string, url: string, policy: Policy): CircuitBreaker.CircuitBreaker {
    const observe = observeTransition(target, url)
    const listener = this.onTransition
    const breaker = CircuitBreaker.make(`${target} at ${url}`, policy.breaker, listener ? (t) => Effect.zipRight(observe(t), listener(t)) : observe)
    tagged(breakerState, { target, instance: url }).unsafeUpdate(STATE_VALUE.Closed, [])
    return breaker
  }

  /** Records the balancer of `target`, a module with several instances (the view lists them). */
  instances(target: string, balancer: Balancer.Balancer): void {
    this.balancers.set(target, balancer)
  }

  /** Records a module served in this process (shown with its policy, without breaker or bulkhead). */
  local(target: string, policy: Policy): void {
    this.locals.set(target, policy)
  }

  /** Every dependency now: the remote ones in the order they were first used, then the local ones. */
  get views(): Effect.Effect<ReadonlyArray<DependencyView>> {
    const locals: ReadonlyArray<DependencyView> = [...this.locals].map(([target, policy]) => ({
      target,
      location: "local",
      breaker: undefined,
      bulkhead: undefined,
      policy,
      instances: undefined
    }))
    const balancers = this.balancers
    return Effect.map(
      Effect.forEach([...this.byTarget.values()], (d) => {
        const balancer = balancers.get(d.target)
        return Effect.map(
          Effect.all([d.breaker.snapshot, d.bulkhead.snapshot, balancer === undefined ? Effect.succeed(undefined) : balancer.views]),
          ([breaker, bulkhead, instances]): DependencyView => ({
            target: d.target,
            location: d.location,
            breaker: balancer === undefined ? breaker : undefined,
            bulkhead,
            policy: d.policy,
            instances
          })
        )
      }),
      (remote) => [...remote, ...locals]
    )
  }
}

const countRefusal = (target: string) => (error: unknown) =>
  CallErrors.is(error) && error.reason === "BreakerOpen"
    ? Metric.increment(tagged(rejections, { target, reason: error.reason }))
    : Effect.void

/**
 * The remote path's policy for `dependency` as one wrapper of a call, outermost first: deadline,
 * retry, breaker, bulkhead, attempt timeout. Module clients get it as interceptors
 * (`interceptors`), outbound HTTP clients through `httpClient`.
 *
 * The attempt timeout is not set here: it is the interceptor's `attemptTimeoutMs`, which the
 * transport applies with the timer it keeps for the deadline anyway (Client.ts), and the whole
 * deadline is set only when a retry needs it (Retry.run). Setting either on the fiber would
 * copy the fiber's FiberRefs twice per call, most of what the policy cost on the bench.
 */
/** What the retry loop reports to the metrics of `target`: retries, refusals, timeouts by scope. */
const retryHooks = (target: string, policy: Policy) => {
  const retried = Metric.increment(tagged(retries, { target }))
  const refused = countRefusal(target)
  const attemptTimedOut = Metric.increment(tagged(timeouts, { target, scope: "attempt" }))
  const deadlinePassed = Metric.increment(tagged(timeouts, { target, scope: "deadline" }))
  const onFailure = (error: unknown) =>
    CallErrors.is(error) && error.module === target
      ? error.kind === "TimedOut"
        ? Effect.flatMap(Deadline.remaining, (left) => (left > 0 ? attemptTimedOut : deadlinePassed))
        : refused(error)
      : Effect.void
  return { hooks: { onRetry: retried, onFailure, deadlineMs: Duration.toMillis(policy.deadline) } }
}

export const protect = (dependency: Dependency) => {
  const { breaker, bulkhead, policy, target } = dependency
  const { hooks } = retryHooks(target, policy)
  const retrying = policy.retry.maxAttempts > 1
  /** One attempt through the breaker and the bulkhead, each with its own handler. */
  const guarded = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>) => breaker.run(info, bulkhead.run(info, call))
  /** The three guards one inside the other: any call, any state. */
  const layered = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Retry.run(policy.retry, info, guarded(info, call), hooks)
  // Nearly every call finds the breaker closed and a free place in the bulkhead. Such a call's
  // first attempt runs with one handler of its exit for all three guards: it gives back the
  // bulkhead's place, lets the breaker judge it, and on a failure hands over to the retry (or
  // the failure observer). The same decisions as `layered`, which runs every other call and
  // every later attempt; one region and one handler instead of three cost about half as much.
  const protected_ = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Effect.withFiberRuntime((fiber) => {
      const admitted = breaker.closed()
      if (admitted < 0 || !bulkhead.enter()) return layered(info, call)
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      const start = clock.unsafeCurrentTimeMillis()
      const callerDeadline = fiber.getFiberRef(Deadline.current)
      return Effect.uninterruptibleMask((restore) =>
        Effect.matchCauseEffect(
          restore(call),
          Client.continuations(
            (value: A) => {
              bulkhead.leave()
              const announced = breaker.judgeClosed(admitted, info.module, Exit.void, start, clock.unsafeCurrentTimeMillis())
              return announced === undefined ? Effect.succeed(value) : Effect.as(announced, value)
            },
            (cause: Cause.Cause<E>): Effect.Effect<A, E | CallError, R> => {
              bulkhead.leave()
              const announced = breaker.judgeClosed(admitted, info.module, Exit.failCause(cause), start, clock.unsafeCurrentTimeMillis())
              const failed = Either.getLeft(Cause.failureOrCause(cause))
              // A defect or an interruption: nothing to retry or observe.
              const next: Effect.Effect<A, E | CallError, R> = Option.isNone(failed)
                ? Effect.failCause(cause)
                : retrying && info.idempotent
                ? restore(Retry.afterFailure(policy.retry, info, guarded(info, call), hooks, failed.value as E | CallError, start, callerDeadline))
                : Effect.zipRight(hooks.onFailure(failed.value), Effect.failCause(cause))
              return announced === undefined ? next : Effect.zipRight(announced, next)
            }
          )
        )
      )
    })
  return Object.assign(protected_, { attemptTimeoutMs: attemptTimeoutMs(policy) })
}

/**
 * The policy for a module with several instances (Balancer.ts): deadline, retry, bulkhead and
 * attempt timeout as `protect`, and no breaker of the target's: the balancer runs each attempt
 * through the breaker of the instance it chose, skips instances whose breaker is open, and sends
 * a retry to another instance when it can.
 */
export const protectInstances = (dependency: Dependency) => {
  const { bulkhead, policy, target } = dependency
  const { hooks } = retryHooks(target, policy)
  const protected_ = <A, E, R>(info: Call, call: Effect.Effect<A, E, R>): Effect.Effect<A, E | CallError, R> =>
    Retry.run<A, E | CallError, R>(policy.retry, info, bulkhead.run(info, call), hooks)
  return Object.assign(protected_, { attemptTimeoutMs: attemptTimeoutMs(policy) })
}

/** One attempt's bound: its timeout, and never more than the whole call's deadline. */
export const attemptTimeoutMs = (policy: Policy) => Math.min(Duration.toMillis(policy.timeout), Duration.toMillis(policy.deadline))

/** The interceptors of the remote path to `dependency`: `protect` as one interceptor. */
export const interceptors = (dependency: Dependency): ReadonlyArray<Interceptor> => [protect(dependency)]

/** This process's dependencies (Host provides them to the admin view and to module handlers). */
export class Dependencies extends Context.Tag("tessera/resilience/Dependencies")<Dependencies, Registry>() {}

/**
 * The settings of an outside system a module calls (`TESSERA_<TARGET>_CALL_TIMEOUT`, ...): the
 * module declares them (`Module.make({ settings: Policy.settingsFor("payments") })`) so that they
 * are checked at start and listed with the rest.
 */
export const settingsFor = (target: string) => Settings.resilience.map((family) => family.forTarget(target))

/**
 * For a module's outbound HTTP to `target`: the `HttpClient` transformation with the policy from
 * `declared` and the environment, its breaker and bulkhead in this process's registry (so the
 * admin view lists it), run while the module's layer is built:
 *
 *     const withPolicy = yield* Policy.httpClientFor("payments")
 *     const client = (yield* HttpClient.HttpClient).pipe(withPolicy)
 */
export const httpClientFor = (target: string, declared?: Defaults) =>
  Effect.gen(function*() {
    const policy = yield* fromConfig(target, declared)
    const registry = Option.getOrElse(yield* Effect.serviceOption(Dependencies), () => new Registry())
    return httpClient(registry.dependency(target, policy, "http"))
  })

/** Methods whose repetition is harmless (RFC 9110, 9.2.2). */
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"])

/** Seconds or an HTTP date in `Retry-After`, as milliseconds from now; undefined when absent or unreadable. */
const retryAfterMs = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** Whether a failed request never reached the server (so it did not run there). */
const notSent = (error: HttpClientError.RequestError): boolean => {
  if (error.reason !== "Transport") return true
  // The system error's code, on the error or down its causes (fetch wraps it in a TypeError).
  let cause: unknown = error.cause
  for (let depth = 0; depth < 4 && typeof cause === "object" && cause !== null; depth++) {
    const code = (cause as { readonly code?: unknown }).code
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN") return true
    cause = (cause as { readonly cause?: unknown }).cause
  }
  return false
}

/**
 * An `HttpClient` whose requests to `dependency` pass the same policy as module calls: deadline,
 * retry (only for idempotent methods or a request with an `Idempotency-Key` header), breaker,
 * bulkhead, attempt timeout. Transport failures become `CallError` (NotSent when the connection
 * was refused, else OutcomeUnknown); a 429 or 503 answer NotSent/Overloaded (with the server's
 * `Retry-After`), any other 5xx OutcomeUnknown: all count against the breaker and are retried.
 * Other answers (2xx-4xx) are the server's: returned as they are.
 *
 *     const provider = (yield* HttpClient.HttpClient).pipe(Policy.httpClient(registry.dependency("payments", policy, "http")))
 */
export const httpClient = (dependency: Dependency) => {
  const protected_ = protect(dependency)
  return <E, R>(client: HttpClient.HttpClient.With<E, R>): HttpClient.HttpClient.With<E | CallError, R> =>
    HttpClient.transform(client, (effect, request) => {
      const info: Call = {
        module: dependency.target,
        name: `${dependency.target}.${request.method} ${new URL(request.url, "http://-").pathname}`,
        idempotent: IDEMPOTENT_METHODS.has(request.method) || request.headers[Idempotent.HEADER] !== undefined
      }
      const failure = (kind: CallError["kind"], reason: CallError["reason"], message: string, after?: number) =>
        new CallError({
          module: info.module,
          rpc: info.name,
          kind,
          reason,
          message: `${info.name}: ${message}`,
          ...(after === undefined ? {} : { retryAfterMs: after })
        })
      const attempt = effect.pipe(
        Effect.catchIf(
          (error): error is E & HttpClientError.RequestError =>
            HttpClientError.isHttpClientError(error) && error._tag === "RequestError",
          (error) =>
            Effect.fail(
              notSent(error)
                ? failure("NotSent", "Unreachable", `not sent: ${error.message}`)
                : failure("OutcomeUnknown", "ConnectionLost", `the connection failed: ${error.message}; it may have run`)
            )
        ),
        Effect.flatMap((response) => {
          if (response.status < 500 && response.status !== 429) return Effect.succeed(response)
          // The body is read and dropped, so that the connection can serve the next request.
          const dropBody = Effect.ignore(response.text)
          if (response.status === 429 || response.status === 503) {
            return Effect.zipRight(
              dropBody,
              Effect.flatMap(Clock.currentTimeMillis, (now) =>
                Effect.fail(failure("NotSent", "Overloaded", `answered ${response.status}`, retryAfterMs(response.headers["retry-after"], now))))
            )
          }
          return Effect.zipRight(dropBody, Effect.fail(failure("OutcomeUnknown", "ConnectionLost", `answered ${response.status}; it may have run`)))
        })
      )
      // Bounded as a module call's attempt is (Client.ts): by its timeout and the deadline in force.
      return protected_(
        info,
        Deadline.within(
          Deadline.enforce(attempt, () => failure("TimedOut", "Deadline", "no answer before the deadline; it may have run")),
          protected_.attemptTimeoutMs
        )
      )
    })
}
