/**
 * Which calls may be tried again without harm. A contract marks an rpc idempotent with an
 * annotation (`Rpc.make("get", ...).annotate(Idempotent, true)`): running it twice has the effect
 * of running it once. A call of any other rpc is idempotent when it carries an idempotency key
 * (the header `idempotency-key`), which its handler uses to run it at most once.
 * Retry policies (runtime/resilience) read `CallInfo.idempotent`, which Client.ts derives from both.
 */
import type { Rpc } from "@effect/rpc"
import { Context, Option } from "effect"

/** The annotation: `true` on an rpc whose repetition is harmless. */
export class Idempotent extends Context.Tag("tessera/transport/Idempotent")<Idempotent, boolean>() {}

/** The header a caller sets to make a call idempotent (lower case, as Headers stores it). */
export const HEADER = "idempotency-key"

/** Whether the contract marks `rpc` idempotent. */
export const isAnnotated = (rpc: Rpc.AnyWithProps): boolean =>
  Option.getOrElse(Context.getOption(rpc.annotations, Idempotent), () => false)
