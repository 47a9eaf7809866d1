/**
 * The in-process client of a hosted module: the same type as the remote @effect/rpc client, and
 * the same semantics, without a network or a server fiber.
 *
 * - The payload is copied through the contract's Schema (encoded, then decoded), so the callee
 *   gets a fresh value that satisfies the contract; results and typed errors come back the same
 *   way. An error the contract does not declare becomes a defect, as it does remotely.
 * - The handler runs in its own module's context: nothing of the caller's context reaches it but
 *   the current span (the caller's open transaction, in particular, does not).
 * - Calls made inside a database transaction are refused in every topology (see `Calls.guard`).
 * - Each call is a span `<module>.<rpc>` carrying `tessera.module`, which the logger reads
 *   (unless `tracing` is off: `TESSERA_RPC_TRACING=false`).
 *
 * Written by hand because @effect/rpc's in-process option (`RpcTest.makeClient`) runs a server
 * fiber per call and skips serialization: it is ~20x slower and shares values between caller and
 * callee. The call path is one fiber-runtime step, one context switch and one result step:
 * `npm run bench` holds it against calling the handler directly.
 */
import { Headers } from "@effect/platform"
import { type Rpc, RpcClient, type RpcClientError, type RpcGroup } from "@effect/rpc"
import { Cause, Clock, Context, Effect, Either, Exit, FiberRef, ParseResult, Schema, Tracer } from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as Calls from "./Calls.ts"

type AnySchema = Schema.Schema<any, any, never>

const formatted = (what: string, error: ParseResult.ParseError) =>
  new Error(`${what}: ${ParseResult.TreeFormatter.formatErrorSync(error)}`)

/** Encode to the wire form and decode back: a fresh value, checked against the contract. */
const copier = (schema: AnySchema) => {
  const encode = Schema.encodeUnknownEither(schema)
  const decode = Schema.decodeUnknownEither(schema)
  return (value: unknown) => Either.flatMap(encode(value), (encoded) => decode(encoded))
}

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
    // As RpcClient does, a payload given as fields is built (and checked) by its Schema.Class.
    const makePayload = (rpc.payloadSchema as { make?: (input: unknown) => unknown }).make
    const copyPayload = copier(rpc.payloadSchema as AnySchema)
    const copySuccess = copier(rpc.successSchema as AnySchema)
    const copyError = copier(rpc.errorSchema as AnySchema)
    const spanOptions = { kind: "client", captureStackTrace: false, attributes: { [MODULE_ATTRIBUTE]: module } } as const

    /** The callee's result, copied back through the contract. */
    const settle = (exit: Exit.Exit<unknown, unknown>): Effect.Effect<unknown, unknown> => {
      if (Exit.isSuccess(exit)) {
        const copied = copySuccess(exit.value)
        return Either.isRight(copied) ? Effect.succeed(copied.right) : Effect.die(formatted(`${name} result`, copied.left))
      }
      const failure = Cause.failureOption(exit.cause)
      if (failure._tag === "None") return exit
      const copied = copyError(failure.value)
      return Either.isRight(copied) ? Effect.fail(copied.right) : Effect.die(formatted(`${name} error`, copied.left))
    }

    const call = (input: unknown, options?: { readonly headers?: Headers.Input }) =>
      Effect.withFiberRuntime<unknown, unknown>((fiber) => {
        const refused = Calls.refusal(name, fiber.currentContext)
        if (refused) return Effect.die(refused)
        let payload: Either.Either<unknown, ParseResult.ParseError>
        try {
          payload = copyPayload(makePayload ? makePayload(input) : input)
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
        // The handler sees its own module's context and this call's span (or, untraced, the
        // caller's), nothing else. One uninterruptible region swaps the context in and out, ends
        // the span and settles the result: Effect.provide would add a region of its own.
        const parent = fiber.currentContext.unsafeMap.get(Tracer.ParentSpan.key) as Tracer.AnySpan | undefined
        const clock = tracing ? Context.get(fiber.currentDefaultServices, Clock.Clock) : undefined
        const span = tracing ? Effect.makeSpan(name, spanOptions) : Effect.succeed(parent)
        return Effect.flatMap(span, (span) => {
          const context = span ? Context.add(entry.context, Tracer.ParentSpan, span) : entry.context
          return Effect.uninterruptibleMask((restore) =>
            Effect.flatMap(FiberRef.getAndSet(FiberRef.currentContext, context), (previous) =>
              Effect.flatMap(Effect.exit(restore(effect)), (exit) => {
                if (clock && span?._tag === "Span") span.end(clock.unsafeCurrentTimeNanos(), exit)
                return Effect.zipRight(FiberRef.set(FiberRef.currentContext, previous), settle(exit))
              }))
          )
        })
      })

    // As RpcClient does: `prefix.method` tags nest under `client.prefix`.
    const dot = rpc._tag.indexOf(".")
    if (dot === -1) client[rpc._tag] = call
    else ((client[rpc._tag.slice(0, dot)] ??= {}) as Record<string, unknown>)[rpc._tag.slice(dot + 1)] = call
  }
  return client as RpcClient.RpcClient<Rpcs, RpcClientError.RpcClientError>
}
