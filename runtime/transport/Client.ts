/**
 * The one place a module client is built, for every topology: the record of per-method functions
 * (`prefix.method` tags nested as RpcClient nests them) over a transport, through a chain of
 * interceptors composed once per dependency.
 */
import type { Rpc } from "@effect/rpc"
import type { Effect } from "effect"

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
export type Interceptor = (info: CallInfo, call: Effect.Effect<unknown, unknown>) => Effect.Effect<unknown, unknown>
