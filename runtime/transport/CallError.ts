/**
 * The one way a call between modules fails for a reason of the transport rather than of the
 * callee's contract: typed, so that policies (retry, breaker) and the edge match on `kind` and
 * `reason` instead of message text. In process and remote calls fail with the same errors, so
 * calling code is the same in every topology.
 *
 * - `NotSent`: the callee did not run the call (the peer is down, not serving, refused it, is
 *   shutting down, has too many calls in flight; a breaker or bulkhead held it back). Trying again
 *   is safe.
 * - `OutcomeUnknown`: the call was sent and the connection was lost before its answer: it may
 *   have run.
 * - `TimedOut`: the call's deadline passed first (Deadline.ts). It may have run.
 */
import { Schema } from "effect"

export class CallError extends Schema.TaggedError<CallError>()("CallError", {
  /** The callee module ("inventory"). */
  module: Schema.String,
  /** The rpc called, as `<module>.<tag>` ("inventory.reserve"). */
  rpc: Schema.String,
  kind: Schema.Literal("NotSent", "OutcomeUnknown", "TimedOut"),
  reason: Schema.Literal(
    "Unreachable",
    "NotServing",
    "Refused",
    "ShuttingDown",
    "Overloaded",
    "BreakerOpen",
    "BulkheadFull",
    "ConnectionLost",
    "Deadline"
  ),
  message: Schema.String,
  /** When trying again may succeed, in milliseconds from now (a breaker's next probe). */
  retryAfterMs: Schema.optional(Schema.Number)
}) {}

export type Kind = CallError["kind"]
export type Reason = CallError["reason"]

/** Whether the callee may have run the call that failed with `error`. */
export const mayHaveRun = (error: CallError): boolean => error.kind !== "NotSent"

/** Whether `u` is a CallError (also when it arrives as a defect, or decoded from the wire). */
export const is: (u: unknown) => u is CallError = Schema.is(CallError)
