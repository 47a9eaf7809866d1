/**
 * The payment provider as payments calls it: over HTTP, under the resilience layer's policy for
 * the target `payment-provider` (deadline, retry, breaker, bulkhead: runtime/resilience/Policy.ts),
 * at `TESSERA_PAYMENT_PROVIDER_URL`, or at a simulator (PspSim.ts) started for the life of the
 * module when that is unset.
 *
 * A charge is sent at most once per call: the policy's retry is off for it, except for a failure
 * that shows it was not sent (refused connection, 503). A charge whose outcome is unknown (the
 * connection dropped, no answer in time) is for the caller to resolve with `lookup`, asking the
 * provider by the charge's idempotency key. Lookups and refunds are retried by the policy.
 */
import { FetchHttpClient, HttpClient, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { Context, type Duration, Effect, Layer, Option, Schema } from "effect"
import * as Policy from "../../../runtime/resilience/Policy.ts"
import * as Retry from "../../../runtime/resilience/Retry.ts"
import type { CallError } from "../../../runtime/transport/CallError.ts"
import * as CallErrors from "../../../runtime/transport/CallError.ts"
import * as PaymentsSettings from "./PaymentsSettings.ts"
import * as PspSim from "./PspSim.ts"

/** What the provider says of a charge. */
export type ChargeOutcome =
  | { readonly _tag: "Charged"; readonly chargeId: string }
  | { readonly _tag: "Declined"; readonly chargeId: string; readonly reason: string }

const SimCharge = Schema.Struct({ id: Schema.String, status: Schema.Literal("succeeded", "declined") })
const Declined = Schema.Struct({
  error: Schema.Struct({ message: Schema.String }),
  charge: SimCharge
})
const Refund = Schema.Struct({ id: Schema.String })

const outcomeOf = (charge: typeof SimCharge.Type, reason = "declined by the provider"): ChargeOutcome =>
  charge.status === "succeeded" ? { _tag: "Charged", chargeId: charge.id } : { _tag: "Declined", chargeId: charge.id, reason }

/** An answer the provider should never give to what payments sends: a bug on one side. */
const unexpected = (what: string, response: HttpClientResponse.HttpClientResponse) =>
  Effect.flatMap(Effect.orElseSucceed(response.text, () => ""), (text) =>
    Effect.die(new Error(`payment provider: unexpected answer ${response.status} to ${what}: ${text.slice(0, 200)}`)))

const json = <A, I>(schema: Schema.Schema<A, I>, response: HttpClientResponse.HttpClientResponse) =>
  Effect.orDie(Effect.flatMap(response.json, Schema.decodeUnknown(schema)))

export interface ChargeRequest {
  readonly amountCents: number
  readonly currency: string
  readonly token: string
  readonly reference: string
}

export class Provider extends Context.Tag("payments/Provider")<Provider, {
  /** Where the provider is (the simulator's address when payments started one). */
  readonly url: string
  /** How long one `charge` may keep sending its request (the policy's deadline): after that it sends nothing more. */
  readonly chargeDeadline: Duration.Duration
  /** Sends a charge under `key` once (again only when it was surely not sent). */
  readonly charge: (key: string, request: ChargeRequest) => Effect.Effect<ChargeOutcome, CallError>
  /** The charge made under `key`, if the provider has one. */
  readonly lookup: (key: string) => Effect.Effect<Option.Option<ChargeOutcome>, CallError>
  /** Refunds a charge in full under `key`: the refund's id. */
  readonly refund: (key: string, chargeId: string) => Effect.Effect<string, CallError>
}>() {}

/** Whether a charge that failed with `error` surely did not reach the provider and may be sent again. */
const surelyNotSent = (error: CallError) =>
  error.kind === "NotSent" && error.reason !== "BreakerOpen" && error.reason !== "BulkheadFull" && error.reason !== "Deadline"

/** The transport's failures as they are; anything else the client fails with (a request it could not build) is a bug. */
const onlyCallErrors = <A, R>(effect: Effect.Effect<A, unknown, R>): Effect.Effect<A, CallError, R> =>
  Effect.catchAll(effect, (error) => CallErrors.is(error) ? Effect.fail(error) : Effect.die(error))

const make = Effect.gen(function*() {
  const configured = yield* Effect.orDie(PaymentsSettings.providerUrl.config)
  const url = Option.isSome(configured)
    ? configured.value
    : yield* Effect.tap(
      Effect.map(PspSim.scoped(), (sim) => sim.url),
      (at) => Effect.logInfo(`payments: no TESSERA_PAYMENT_PROVIDER_URL; a payment provider simulator runs in this process at ${at}`)
    )
  const policy = yield* Effect.orDie(Policy.fromConfig(PaymentsSettings.PROVIDER, PaymentsSettings.providerPolicy))
  const registry = Option.getOrElse(yield* Effect.serviceOption(Policy.Dependencies), () => new Policy.Registry())
  const dependency = registry.dependency(PaymentsSettings.PROVIDER, policy, "http")
  const base = (yield* HttpClient.HttpClient).pipe(HttpClient.mapRequest(HttpClientRequest.prependUrl(url)))
  const client = base.pipe(Policy.httpClient(dependency))
  // The same breaker and bulkhead, without the policy's retry: a charge is not sent twice blindly.
  const once = base.pipe(Policy.httpClient({ ...dependency, policy: { ...policy, retry: { ...policy.retry, maxAttempts: 1 } } }))
  const resend = Retry.schedule(policy.retry)

  const charge = (key: string, request: ChargeRequest) =>
    once.execute(
      HttpClientRequest.post("/v1/charges").pipe(
        HttpClientRequest.setHeader("idempotency-key", key),
        HttpClientRequest.bodyUnsafeJson(request)
      )
    ).pipe(
      Effect.retry({ schedule: resend, while: (error) => CallErrors.is(error) && surelyNotSent(error) }),
      Effect.flatMap((response): Effect.Effect<ChargeOutcome> => {
        if (response.status === 200 || response.status === 201) return Effect.map(json(SimCharge, response), (c) => outcomeOf(c))
        if (response.status === 402) return Effect.map(json(Declined, response), (d) => outcomeOf(d.charge, d.error.message))
        return unexpected("a charge", response)
      }),
      Effect.scoped,
      onlyCallErrors,
      Effect.withSpan("Provider.charge")
    )

  const lookup = (key: string) =>
    client.execute(HttpClientRequest.get("/v1/charges", { urlParams: { idempotencyKey: key } })).pipe(
      Effect.flatMap((response): Effect.Effect<Option.Option<ChargeOutcome>> => {
        if (response.status === 200) return Effect.map(json(SimCharge, response), (c) => Option.some(outcomeOf(c)))
        if (response.status === 404) return Effect.as(Effect.ignore(response.text), Option.none())
        return unexpected("a lookup", response)
      }),
      Effect.scoped,
      onlyCallErrors,
      Effect.withSpan("Provider.lookup")
    )

  const refund = (key: string, chargeId: string) =>
    client.execute(
      HttpClientRequest.post("/v1/refunds").pipe(
        HttpClientRequest.setHeader("idempotency-key", key),
        HttpClientRequest.bodyUnsafeJson({ chargeId })
      )
    ).pipe(
      Effect.flatMap((response): Effect.Effect<string> =>
        response.status === 200 || response.status === 201
          ? Effect.map(json(Refund, response), (r) => r.id)
          : unexpected("a refund", response)
      ),
      Effect.scoped,
      onlyCallErrors,
      Effect.withSpan("Provider.refund")
    )

  return { url, chargeDeadline: policy.deadline, charge, lookup, refund }
})

/** The provider, with its own HTTP client (fetch); a simulator for the layer's life when no URL is set. */
export const layer = Layer.scoped(Provider, make).pipe(Layer.provide(FetchHttpClient.layer))
