/**
 * The one place a module client is built, for every topology: the record of per-method functions
 * (`prefix.method` tags nested as RpcClient nests them) over a transport, through a chain of
 * interceptors composed once per dependency.
 *
 * - A transport (LocalClient.ts in process, RemoteClient.ts over the lane) says how one attempt of
 *   a call is carried; it fails with a `CallError` for whatever kept the call from being answered.
 * - What is the same on every path lives here: the refusal of calls made inside a transaction
 *   (Calls.ts), the call's headers (the fiber's `RpcClient.currentHeaders` and the call's own),
 *   and the deadline (Deadline.ts): each transport ends an attempt still running when the
 *   deadline in force passes (in process it interrupts the handler, remotely it gives the call up
 *   at the peer) with `deadlineExceeded`. The transports keep that timer themselves, one plain
 *   timer per call, because `Effect.timeoutFail` around every attempt forks a fiber and a sleep
 *   per call: with the gateway's deadline on every request, that cost the remote path half its
 *   calls per second on the bench.
 * - Each call is a span (unless tracing is off), around interceptors that wrap it, outermost
 *   first: metrics on every path (below), the resilience policies on the remote one
 *   (runtime/resilience). The effect an interceptor gets is re-runnable: each run is a new attempt.
 */
import { Headers } from "@effect/platform"
import { type Rpc, RpcClient, type RpcGroup } from "@effect/rpc"
import { Cause, Clock, Context, Effect, Either, Exit, type Fiber, Metric, MetricBoundaries, MetricLabel, type Tracer } from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as Calls from "./Calls.ts"
import { CallError } from "./CallError.ts"
import * as Deadline from "./Deadline.ts"
import * as Idempotent from "./Idempotent.ts"

/** What an interceptor knows of the call it wraps. */
export interface CallInfo {
  /** The callee module ("inventory"). */
  readonly module: string
  /** The rpc's tag ("reserve"). */
  readonly tag: string
  /** `${module}.${tag}`: the span's and the metrics' name of the call. */
  readonly name: string
  readonly rpc: Rpc.AnyWithProps
  /** The rpc is annotated Idempotent, or the call carries an `idempotency-key` header. */
  readonly idempotent: boolean
  /** Fire and forget: the caller gets void as soon as the call is handed over. */
  readonly discard: boolean
}

/**
 * Wraps one call's effect; composed once per dependency, outermost first. `call` is re-runnable:
 * each run is a new attempt (a retry runs it again). It fails with the contract's errors, a
 * `CallError` for the transport's failures, or dies with a defect.
 */
export type Interceptor = ((info: CallInfo, call: Effect.Effect<unknown, unknown>) => Effect.Effect<unknown, unknown>) & {
  /**
   * The longest one attempt may take (a policy's attempt timeout). The transport ends an attempt
   * at the sooner of this and the deadline in force, with the timer it keeps for the deadline
   * anyway: a bound set on the fiber instead would copy its FiberRefs twice on every call.
   */
  readonly attemptTimeoutMs?: number | undefined
}

/** How the calls of one rpc are carried: made once per rpc when the client is built. */
export interface Carrier {
  /**
   * The payload as given to the client (fields or a built value), checked against the contract
   * and made ready to carry (copied in process, encoded remotely): once per call, not per attempt.
   * Left: why it does not fit, as the defect the call dies with.
   */
  readonly prepare: (input: unknown) => Either.Either<unknown, unknown>
  /**
   * One attempt of a call: carries it and waits for its answer, at most until the deadline in
   * force or for `attemptMs`, whichever ends first (`millisLeft`; then it fails with
   * `deadlineExceeded`). Fails with the contract's errors
   * or a `CallError`; with `discard`, succeeds with void once the call is handed over. Runs in
   * the caller's fiber (its deadline is the call's) and must be re-runnable. `parent` is the span
   * the callee's continues: the call's own, or untraced the caller's.
   */
  readonly attempt: (
    prepared: unknown,
    headers: Headers.Headers,
    discard: boolean,
    parent: Tracer.AnySpan | undefined,
    /** The longest this attempt may take (ms; `Infinity`: only the deadline bounds it). */
    attemptMs: number
  ) => Effect.Effect<unknown, unknown>
}

/** How one attempt of a call is carried to a module, wherever it runs. */
export interface Transport {
  readonly rpc: (info: { readonly module: string; readonly tag: string; readonly name: string; readonly rpc: Rpc.AnyWithProps }) => Carrier
}

/**
 * The failure of an attempt whose deadline passed before it was answered (it may have run).
 * Transports end attempts with it, each with a timer of its own (see the header).
 */
export const deadlineExceeded = (module: string, name: string) =>
  new CallError({ module, rpc: name, kind: "TimedOut", reason: "Deadline", message: `${name} did not answer before its deadline: it may have run` })

/**
 * Milliseconds from now to the deadline in force in `fiber` (Deadline.ts), by the fiber's Clock,
 * or `attemptMs` if that is sooner; `Infinity` without either.
 */
export const millisLeft = (fiber: Fiber.RuntimeFiber<unknown, unknown>, attemptMs = Number.POSITIVE_INFINITY): number => {
  const deadline = fiber.getFiberRef(Deadline.current)
  return deadline === Number.POSITIVE_INFINITY
    ? attemptMs
    : Math.min(attemptMs, deadline - Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis())
}

/**
 * The options of `Effect.matchCauseEffect`, from two functions, for code that runs on every call.
 * A function written as a property of an object literal is named after it, and a compiler that
 * keeps names (tsx, which runs the source in development and the benchmarks' callers, always
 * does; the release is built without it) calls a helper that defines its `name` on every such
 * closure made: per call, that made V8 deoptimise the path. Passed as arguments, they stay unnamed.
 */
export const continuations = <A, E, B, E2, R2, C, E3, R3>(
  onSuccess: (value: A) => Effect.Effect<B, E2, R2>,
  onFailure: (cause: Cause.Cause<E>) => Effect.Effect<C, E3, R3>
) => ({ onSuccess, onFailure })

/** An interceptor that changes nothing (a chain of none). */
const direct = (_info: CallInfo, call: Effect.Effect<unknown, unknown>) => call

/** The chain of `interceptors` as one, outermost first. */
export const compose = (interceptors: ReadonlyArray<Interceptor>): Interceptor => {
  if (interceptors.length === 0) return direct
  if (interceptors.length === 1) return interceptors[0]!
  return (info, call) => {
    let wrapped = call
    for (let i = interceptors.length - 1; i >= 0; i--) wrapped = interceptors[i]!(info, wrapped)
    return wrapped
  }
}

/**
 * The client of `module` over `transport`, each call wrapped by `interceptors` (outermost first).
 *
 * Unless `tracing` is off (`TESSERA_RPC_TRACING=false`), each call is a span `<module>.<rpc>`
 * (kind client, carrying `tessera.module`, which the logger reads) around the interceptors,
 * whose ids the callee's span continues; untraced, the callee's parent is the caller's span.
 * The span is made here, not by an interceptor: `Effect.useSpan` hands it to the transport as an
 * argument, where an interceptor could only make it the fiber's current span with
 * `Effect.withSpan`, whose switch of the fiber's context cost a third of an in-process call on
 * the bench.
 */
export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  transport: Transport,
  interceptors: ReadonlyArray<Interceptor>,
  options: { readonly tracing?: boolean } = {}
): RpcClient.RpcClient<Rpcs, CallError> => {
  const intercept = compose(interceptors)
  const attemptMs = Math.min(...interceptors.map((i) => i.attemptTimeoutMs ?? Number.POSITIVE_INFINITY))
  const tracing = options.tracing ?? true
  const spanOptions = { kind: "client", captureStackTrace: false, attributes: { [MODULE_ATTRIBUTE]: module } } as const
  const client: Record<string, unknown> = {}
  for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
    const tag = rpc._tag
    const name = `${module}.${tag}`
    const carrier = transport.rpc({ module, tag, name, rpc })
    const annotated = Idempotent.isAnnotated(rpc)
    // The four kinds of call an rpc has, made once: the chain reads them on every call.
    const infos = [false, true].map((idempotent) =>
      [false, true].map((discard): CallInfo => ({ module, tag, name, rpc, idempotent: annotated || idempotent, discard }))
    )
    const attempt = (prepared: unknown, headers: Headers.Headers, discard: boolean, parent: Tracer.AnySpan | undefined) =>
      carrier.attempt(prepared, headers, discard, parent, attemptMs)

    const call = (input: unknown, options?: { readonly headers?: Headers.Input; readonly discard?: boolean }) =>
      Effect.withFiberRuntime<unknown, unknown>((fiber) => {
        const refused = Calls.refusal(name, fiber.currentContext)
        if (refused) return Exit.die(refused)
        let prepared: Either.Either<unknown, unknown>
        try {
          prepared = carrier.prepare(input)
        } catch (defect) {
          return Exit.die(defect)
        }
        if (Either.isLeft(prepared)) return Exit.die(prepared.left)
        const inherited = fiber.getFiberRef(RpcClient.currentHeaders)
        const headers = options?.headers ? Headers.merge(inherited, Headers.fromInput(options.headers)) : inherited
        const discard = options?.discard === true
        const info = infos[Idempotent.HEADER in headers ? 1 : 0]![discard ? 1 : 0]!
        return tracing
          ? Effect.useSpan(name, spanOptions, (span) => intercept(info, attempt(prepared.right, headers, discard, span)))
          : intercept(info, attempt(prepared.right, headers, discard, fiber.currentSpan))
      })

    // As RpcClient does: `prefix.method` tags nest under `client.prefix`.
    const dot = tag.indexOf(".")
    if (dot === -1) client[tag] = call
    else ((client[tag.slice(0, dot)] ??= {}) as Record<string, unknown>)[tag.slice(dot + 1)] = call
  }
  return client as RpcClient.RpcClient<Rpcs, CallError>
}

// ---------------------------------------------------------------------------------------------
// The interceptors of every path.

/** The metrics of calls between modules, labelled `module` (the callee) and `rpc`. */
export const callsTotal = Metric.counter("tessera_rpc_calls_total", {
  description: "calls to other modules, by callee module and rpc",
  incremental: true
})
export const failuresTotal = Metric.counter("tessera_rpc_failures_total", {
  description: "calls to other modules that failed, by callee, rpc, kind (Error, Defect, Interrupted or a CallError kind) and reason",
  incremental: true
})
/**
 * A histogram of milliseconds rather than `Metric.timer`: a timer adds its unit as a label on
 * every update, which makes a new label array each time and misses Effect's cache of hooks.
 */
export const duration = Metric.histogram(
  "tessera_rpc_duration_ms",
  MetricBoundaries.fromIterable([0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]),
  "how long calls to other modules took, in milliseconds, by callee and rpc"
)

/** The labels of a failed call: what it failed with. */
const failureLabels = (cause: Cause.Cause<unknown>): readonly [kind: string, reason: string] => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const error = failure.value
    if (error instanceof CallError) return [error.kind, error.reason]
    const tag = typeof error === "object" && error !== null && "_tag" in error ? String(error._tag) : "unknown"
    return ["Error", tag]
  }
  const defect = Cause.dieOption(cause)
  if (defect._tag === "Some") {
    return defect.value instanceof CallError ? [defect.value.kind, defect.value.reason] : ["Defect", "defect"]
  }
  return ["Interrupted", "interrupted"]
}

/**
 * Counts each call, its failures (by kind and reason) and its duration, per callee and rpc. A
 * call updates the metrics directly (`unsafeUpdate`) with label arrays made once per rpc (Effect
 * caches a metric's hook per array), so it pays two clock reads and a map lookup, no fiber of
 * its own.
 */
export const metrics: Interceptor = (() => {
  const cache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  const labelsOf = (info: CallInfo) => {
    let labels = cache.get(info.name)
    if (labels === undefined) {
      labels = [MetricLabel.make("module", info.module), MetricLabel.make("rpc", info.name)]
      cache.set(info.name, labels)
    }
    return labels
  }
  const failureLabelsOf = (info: CallInfo, labels: ReadonlyArray<MetricLabel.MetricLabel>, cause: Cause.Cause<unknown>) => {
    const [kind, reason] = failureLabels(cause)
    const key = `${info.name}\u0000${kind}\u0000${reason}`
    let all = cache.get(key)
    if (all === undefined) {
      all = [...labels, MetricLabel.make("kind", kind), MetricLabel.make("reason", reason)]
      cache.set(key, all)
    }
    return all
  }
  return (info, call) =>
    Effect.withFiberRuntime<unknown, unknown>((fiber) => {
      const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
      const labels = labelsOf(info)
      const start = clock.unsafeCurrentTimeNanos()
      callsTotal.unsafeUpdate(1, labels)
      return Effect.onExit(call, (exit) => {
        duration.unsafeUpdate(Number(clock.unsafeCurrentTimeNanos() - start) / 1e6, labels)
        if (Exit.isFailure(exit)) failuresTotal.unsafeUpdate(1, failureLabelsOf(info, labels, exit.cause))
        return Effect.void
      })
    })
})()

/** The interceptors every client has, in process and remote: metrics. */
export const standard: ReadonlyArray<Interceptor> = [metrics]
