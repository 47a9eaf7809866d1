/**
 * `GET /v1/admin/resilience` (admins only): each dependency this gateway process calls, with
 * its breaker's state and window, its bulkhead's calls in flight and waiting, and the policy in
 * force. It shows the process that answers: in a split deployment each process has its own
 * breakers (a module's own calls are seen on its process's logs and metrics).
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Duration, Effect, Schema } from "effect"
import * as Auth from "../gateway/Auth.ts"
import type * as CircuitBreaker from "./CircuitBreaker.ts"
import * as Policy from "./Policy.ts"

/** The dependencies of this process (Host.ts provides them). */
export const Dependencies = Policy.Dependencies

const Millis = Schema.Number.annotations({ description: "milliseconds" })

const BreakerView = Schema.Struct({
  state: Schema.Literal("Closed", "Open", "HalfOpen"),
  calls: Schema.Int.annotations({ description: "calls in the sliding window" }),
  failures: Schema.Int.annotations({ description: "of which failed in transport or timed out" }),
  slow: Schema.Int.annotations({ description: "of which were slow" }),
  probes: Schema.Int.annotations({ description: "probes running (half-open)" }),
  retryAfterMs: Schema.optionalWith(Millis, { exact: true }).annotations({ description: "while open: time to the next probe" })
}).annotations({ identifier: "resilience.Breaker" })

const BulkheadView = Schema.Struct({
  inFlight: Schema.Int,
  queued: Schema.Int,
  maxConcurrent: Schema.Int,
  maxQueue: Schema.Int
}).annotations({ identifier: "resilience.Bulkhead" })

const PolicyView = Schema.Struct({
  timeoutMs: Millis,
  deadlineMs: Millis,
  retry: Schema.Struct({ maxAttempts: Schema.Int, baseDelayMs: Millis, maxDelayMs: Millis, maxTotalMs: Millis }),
  breaker: Schema.Struct({
    windowSize: Schema.Int,
    windowMs: Millis,
    minimumCalls: Schema.Int,
    failureRate: Schema.Number,
    slowCallMs: Millis,
    slowCallRate: Schema.Number,
    openForMs: Millis,
    halfOpenProbes: Schema.Int,
    probeTimeoutMs: Millis
  }),
  bulkhead: Schema.Struct({ maxConcurrent: Schema.Int, maxQueue: Schema.Int })
}).annotations({ identifier: "resilience.Policy" })

const InstanceView = Schema.Struct({
  url: Schema.String,
  connected: Schema.Boolean.annotations({ description: "whether this process's connection to it is open" }),
  outstanding: Schema.Int.annotations({ description: "calls from this process in flight to it" }),
  draining: Schema.Boolean.annotations({ description: "gone from its DNS name: no new calls, closed once these end" }),
  breaker: BreakerView
}).annotations({ identifier: "resilience.Instance" })

/** One dependency as this process sees it. */
export const DependencyView = Schema.Struct({
  target: Schema.String.annotations({ description: "the module (or outside system) called" }),
  location: Schema.Literal("remote", "http", "local"),
  breaker: Schema.NullOr(BreakerView).annotations({
    description: "null for a module in this process, or one with several instances (a breaker each, under instances)"
  }),
  bulkhead: Schema.NullOr(BulkheadView).annotations({ description: "null for a module in this process" }),
  policy: PolicyView,
  instances: Schema.optionalWith(Schema.Array(InstanceView), { exact: true }).annotations({
    description: "a module with several instances, or located by a DNS name: each instance, with its breaker"
  })
}).annotations({ identifier: "resilience.Dependency" })

export const ResilienceView = Schema.Struct({ dependencies: Schema.Array(DependencyView) }).annotations({
  identifier: "resilience.Resilience"
})

export class ResilienceHttp extends HttpApiGroup.make("resilience")
  .add(
    HttpApiEndpoint.get("resilience", "/admin/resilience")
      .addSuccess(ResilienceView)
      .middleware(Auth.AdminOnly)
      .annotate(
        OpenApi.Summary,
        "Each dependency this process calls: breaker state and window, calls in flight and waiting, the policy in force (admin)"
      )
  )
  .prefix("/v1")
{}

const ms = Duration.toMillis

const breakerView = (b: CircuitBreaker.Snapshot): typeof BreakerView.Type => ({
  state: b.state,
  calls: b.calls,
  failures: b.failures,
  slow: b.slow,
  probes: b.probes,
  ...(b.retryAfterMs === undefined ? {} : { retryAfterMs: b.retryAfterMs })
})

const policyView = (p: Policy.Policy): typeof PolicyView.Type => ({
  timeoutMs: ms(p.timeout),
  deadlineMs: ms(p.deadline),
  retry: {
    maxAttempts: p.retry.maxAttempts,
    baseDelayMs: ms(p.retry.baseDelay),
    maxDelayMs: ms(p.retry.maxDelay),
    maxTotalMs: ms(p.retry.maxTotal)
  },
  breaker: {
    windowSize: p.breaker.windowSize,
    windowMs: ms(p.breaker.windowDuration),
    minimumCalls: p.breaker.minimumCalls,
    failureRate: p.breaker.failureRate,
    slowCallMs: ms(p.breaker.slowCall),
    slowCallRate: p.breaker.slowCallRate,
    openForMs: ms(p.breaker.openFor),
    halfOpenProbes: p.breaker.halfOpenProbes,
    probeTimeoutMs: ms(p.breaker.probeTimeout)
  },
  bulkhead: { maxConcurrent: p.bulkhead.maxConcurrent, maxQueue: p.bulkhead.maxQueue }
})

/** The view of `registry` now. */
export const view = (registry: Policy.Registry) =>
  Effect.map(registry.views, (views) => ({
    dependencies: views.map((v) => ({
      target: v.target,
      location: v.location,
      breaker: v.breaker === undefined ? null : breakerView(v.breaker),
      bulkhead: v.bulkhead === undefined
        ? null
        : { inFlight: v.bulkhead.inFlight, queued: v.bulkhead.queued, maxConcurrent: v.bulkhead.maxConcurrent, maxQueue: v.bulkhead.maxQueue },
      policy: policyView(v.policy),
      ...(v.instances === undefined ? {} : {
        instances: v.instances.map((i) => ({
          url: i.url,
          connected: i.connected,
          outstanding: i.outstanding,
          draining: i.draining,
          breaker: breakerView(i.breaker)
        }))
      })
    }))
  }))

/** Its handlers, for the composed API named `apiId` (Gateway.API_ID). */
export const layer = (apiId: string) =>
  HttpApiBuilder.group(
    HttpApi.make(apiId).add(ResilienceHttp),
    "resilience",
    (handlers) => Effect.map(Dependencies, (registry) => handlers.handle("resilience", () => view(registry)))
  )
