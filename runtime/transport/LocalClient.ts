/**
 * The in-process client of a hosted module: the same type as the remote client, and the same
 * semantics, without a network or a server fiber.
 *
 * - Payloads, results and typed errors cross through the contract's Schemas (`Copy.ts`): the
 *   other side gets a value that satisfies the contract and that nobody can change under it.
 *   An error the contract does not declare becomes a defect, as it does remotely.
 * - The handler runs in its own module's context: nothing of the caller's context reaches it but
 *   the current span (the caller's open transaction, in particular, does not).
 * - Calls made inside a database transaction are refused in every topology (see `Calls.refusal`).
 * - Each call is a span `<module>.<rpc>` carrying `tessera.module`, which the logger reads
 *   (unless `tracing` is off: `TESSERA_RPC_TRACING=false`).
 * - Interrupting the caller interrupts the handler.
 *
 * Written by hand because @effect/rpc's in-process option (`RpcTest.makeClient`) runs a server
 * fiber per call and skips serialization: it is ~20x slower and shares values between caller and
 * callee. Here a call runs in the caller's fiber: one step checks and copies the payload and
 * starts the span, one uninterruptible region switches the context in, runs the handler and
 * switches it back, one step copies the result. `npm run bench` holds it against calling the
 * handler directly (about 3 µs on the bench's echo.get, a Schema.Class built and checked); a
 * call adds about 1 µs for the span (half of it the ids Effect's native tracer draws for a span
 * without a parent), half that for the switch, as much for the payload's copy and the result's
 * check, and the steps themselves.
 */
import { Headers } from "@effect/platform"
import { type Rpc, RpcClient, type RpcClientError, type RpcGroup } from "@effect/rpc"
import {
  Cause,
  Context,
  Effect,
  Either,
  Exit,
  type Fiber,
  FiberRef,
  FiberRefs,
  ParseResult,
  Schema,
  Tracer
} from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import { spanTime, startSpan } from "../observability/Spans.ts"
import * as Calls from "./Calls.ts"
import * as Copy from "./Copy.ts"
import * as Wire from "./Wire.ts"

type AnySchema = Schema.Schema<any, any, never>

/** What did not match the contract: bounded as on the wire, so no value can make it throw. */
const formatted = (what: string, issue: ParseResult.ParseIssue) => new Error(`${what}: ${Wire.formattedIssue(issue)}`)

/**
 * The switch of a fiber into the callee's module and back. A handler runs in the caller's fiber
 * with its own module's context, and what it does to the fiber's FiberRefs stays with the call
 * (as it does remotely, where the handler has a fiber of its own). `enter` keeps the fiber's
 * FiberRefs as they are and sets new ones, the same but for the context; `leave` puts the kept
 * ones back whole, keeping only an interruption that arrived meanwhile (the runtime records it
 * in a FiberRef; the fiber must stay interrupted).
 *
 * Not `FiberRef.set` twice, nor `Effect.provide`: each write of a FiberRef copies the fiber's
 * FiberRefs and compares the old value with the new, which for a context means hashing a fresh
 * one; together a third of a call's cost. Keeping, setting and restoring them whole takes the
 * fiber's own field and methods (what `Effect.setFiberRefs` and `FiberRef.set` run), which the
 * public `RuntimeFiber` interface leaves out: the version of effect is pinned, and
 * LocalClient.test.ts covers both ways, interruption included. Called by the fiber itself only.
 */
interface FiberInternals {
  /** The fiber's FiberRefs as it holds them (`getFiberRefs()` copies them first). */
  readonly _fiberRefs: FiberRefs.FiberRefs
  setFiberRefs(fiberRefs: FiberRefs.FiberRefs): void
  setFiberRef<A>(fiberRef: FiberRef.FiberRef<A>, value: A): void
}

const internals = (fiber: Fiber.RuntimeFiber<unknown, unknown>) => fiber as unknown as FiberInternals

const enter = (fiber: Fiber.RuntimeFiber<unknown, unknown>, context: Context.Context<never>): FiberRefs.FiberRefs => {
  const kept = internals(fiber)._fiberRefs
  const locals = new Map(kept.locals)
  // As `FiberRef.set` writes it: over the fiber's own entry, or on top of an inherited one.
  const id = fiber.id()
  const stack = locals.get(FiberRef.currentContext)
  const entry = [id, context] as const
  locals.set(
    FiberRef.currentContext,
    stack === undefined ? [entry] : stack[0][0].id === id.id ? [entry, ...stack.slice(1)] : [entry, ...stack]
  )
  internals(fiber).setFiberRefs(FiberRefs.unsafeMake(locals))
  return kept
}

const leave = (fiber: Fiber.RuntimeFiber<unknown, unknown>, kept: FiberRefs.FiberRefs) => {
  const interrupted = fiber.getFiberRef(FiberRef.interruptedCause)
  internals(fiber).setFiberRefs(kept)
  if (fiber.getFiberRef(FiberRef.interruptedCause) !== interrupted) {
    internals(fiber).setFiberRef(FiberRef.interruptedCause, interrupted)
  }
}

/**
 * The options of `Effect.matchCauseEffect`, from two functions. A function written as a property
 * of an object literal is named after it, and a compiler that keeps names (tsx, which runs the
 * source in development, always does; the release is built without it) calls a helper on every
 * such closure it makes: a measurable share of a call made per call. Passed as arguments, the
 * call's continuations stay unnamed.
 */
const continuations = <A, E, B, E2, C, E3>(
  onSuccess: (value: A) => Effect.Effect<B, E2>,
  onFailure: (cause: Cause.Cause<E>) => Effect.Effect<C, E3>
) => ({ onSuccess, onFailure })

export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Context.Context<Rpc.ToHandler<Rpcs>>,
  options: { readonly tracing?: boolean } = {}
): RpcClient.RpcClient<Rpcs, RpcClientError.RpcClientError> => {
  const tracing = options.tracing ?? true
  const client: Record<string, unknown> = {}
  for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
    const entry = handlers.unsafeMap.get(rpc.key) as Rpc.Handler<string> | undefined
    if (entry === undefined) throw new Error(`${module} has no handler for ${rpc._tag}`)
    const name = `${module}.${rpc._tag}`
    // As RpcClient does, a payload given as fields is built by its schema's `make`, which fills in
    // constructor defaults and makes class instances. A struct of untransformed fields without
    // defaults needs no building: the copy below checks it and builds it afresh, as decoding
    // does. Where `make` is needed and the schema transforms nothing, the copy's check is the one
    // `make` would make: `make` skips it.
    const payloadSchema = rpc.payloadSchema as AnySchema & {
      readonly make?: (input: unknown, disableValidation?: boolean) => unknown
      readonly fields?: Schema.Struct.Fields
    }
    const payloadChecked = Copy.untransformed(payloadSchema.ast)
    const makePayload = payloadChecked && payloadSchema.ast._tag === "TypeLiteral" && payloadSchema.fields &&
        !Copy.hasConstructorDefaults(payloadSchema.fields)
      ? undefined
      : payloadSchema.make
    const copyPayload = Copy.copier(payloadSchema, { share: true })
    const copySuccess = Copy.copier(rpc.successSchema as AnySchema, { share: true })
    const copyError = Copy.copier(rpc.errorSchema as AnySchema, { share: false })
    const spanOptions = { kind: "client", captureStackTrace: false, attributes: { [MODULE_ATTRIBUTE]: module } } as const

    /** The callee's result and failure, copied back through the contract. */
    const succeeded = (value: unknown): Effect.Effect<unknown, unknown> => {
      const copied = copySuccess(value)
      return Either.isRight(copied) ? Effect.succeed(copied.right) : Effect.die(formatted(`${name} result`, copied.left))
    }
    const failed = (cause: Cause.Cause<unknown>): Effect.Effect<unknown, unknown> => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "None") return Effect.failCause(cause)
      const copied = copyError(failure.value)
      return Either.isRight(copied) ? Effect.fail(copied.right) : Effect.die(formatted(`${name} error`, copied.left))
    }

    /**
     * Runs the handler's effect with its module's context and `parent` as the current span, ends
     * `span` (this call's own, if traced), puts the caller's FiberRefs back and copies the
     * result. One uninterruptible region switches in and out (`enter`, `leave`), so that the
     * caller's own finalizers see its context even when it is interrupted during the call; only
     * the handler runs interruptibly (if the caller was).
     */
    const run = (
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      effect: Effect.Effect<unknown, unknown>,
      parent: Tracer.AnySpan | undefined,
      span: Tracer.Span | undefined
    ) => {
      const context = parent ? Context.add(entry.context, Tracer.ParentSpan, parent) : entry.context
      return Effect.uninterruptibleMask((restore) => {
        const kept = enter(fiber, context)
        return Effect.matchCauseEffect(
          restore(effect),
          continuations(
            (value) => {
              span?.end(spanTime(fiber), Exit.succeed(value))
              leave(fiber, kept)
              return succeeded(value)
            },
            (cause) => {
              span?.end(spanTime(fiber), Exit.failCause(cause))
              leave(fiber, kept)
              return failed(cause)
            }
          )
        )
      })
    }

    const call = (input: unknown, options?: { readonly headers?: Headers.Input }) =>
      Effect.withFiberRuntime<unknown, unknown>((fiber) => {
        const refused = Calls.refusal(name, fiber.currentContext)
        if (refused) return Effect.die(refused)
        let payload: Either.Either<unknown, ParseResult.ParseIssue>
        try {
          payload = copyPayload(makePayload ? makePayload.call(payloadSchema, input, payloadChecked) : input)
        } catch (defect) {
          return Effect.die(defect)
        }
        if (Either.isLeft(payload)) return Effect.die(formatted(`${name} payload`, payload.left))
        const inherited = fiber.getFiberRef(RpcClient.currentHeaders)
        const result = entry.handler(payload.right, {
          clientId: 0,
          headers: options?.headers ? Headers.merge(inherited, Headers.fromInput(options.headers)) : inherited
        }) as Effect.Effect<unknown, unknown> | Rpc.Wrapper<Effect.Effect<unknown, unknown>>
        const effect = Effect.isEffect(result) ? result : result.value
        if (!Effect.isEffect(effect)) return Effect.die(new Error(`${name}: streaming calls are not supported in process`))
        // Untraced, the handler keeps the caller's span as its parent.
        if (!tracing) return run(fiber, effect, fiber.currentSpan, undefined)
        const span = startSpan(fiber, name, spanOptions)
        return span
          ? run(fiber, effect, span, span)
          : Effect.flatMap(Effect.makeSpan(name, spanOptions), (span) => run(fiber, effect, span, span))
      })

    // As RpcClient does: `prefix.method` tags nest under `client.prefix`.
    const dot = rpc._tag.indexOf(".")
    if (dot === -1) client[rpc._tag] = call
    else ((client[rpc._tag.slice(0, dot)] ??= {}) as Record<string, unknown>)[rpc._tag.slice(dot + 1)] = call
  }
  return client as RpcClient.RpcClient<Rpcs, RpcClientError.RpcClientError>
}
