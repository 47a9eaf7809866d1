/**
 * The in-process client of a hosted module: the same type as the remote @effect/rpc client, and
 * the same semantics, without a network or a server fiber.
 *
 * - The payload is built and copied through the contract's Schema (encoded, then decoded), so
 *   the callee gets a fresh value that satisfies the contract; results and typed errors come back
 *   the same way. An error the contract does not declare becomes a defect, as it does remotely.
 * - The handler runs in its own module's context: nothing of the caller's context reaches it but
 *   the current span (the caller's open transaction, in particular, does not).
 * - Calls made inside a database transaction are refused in every topology (see `Calls.guard`).
 *
 * Written by hand because @effect/rpc's in-process option (`RpcTest.makeClient`) runs a server
 * fiber per call and skips serialization: it is ~20x slower and shares values between caller and
 * callee.
 */
import type { Headers } from "@effect/platform"
import { Headers as HeadersNs } from "@effect/platform"
import { type Rpc, RpcClient, type RpcClientError, type RpcGroup } from "@effect/rpc"
import { Cause, Context, Effect, Either, ParseResult, Schema, Tracer } from "effect"
import * as Calls from "./Calls.ts"

type AnySchema = Schema.Schema<any, any, never>

/** Encode to the wire form and decode back: a fresh value, checked against the contract. */
const copier = (schema: AnySchema) => {
  const encode = Schema.encodeUnknownEither(schema)
  const decode = Schema.decodeUnknownEither(schema)
  return (value: unknown) => Either.flatMap(encode(value), (encoded) => decode(encoded))
}

const orDie = <A>(result: Either.Either<A, ParseResult.ParseError>, what: string): Effect.Effect<A> =>
  Either.isRight(result)
    ? Effect.succeed(result.right)
    : Effect.die(new Error(`${what}: ${ParseResult.TreeFormatter.formatErrorSync(result.left)}`))

const parentSpanKey = Tracer.ParentSpan.key

export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Context.Context<Rpc.ToHandler<Rpcs>>
): RpcClient.RpcClient<Rpcs, RpcClientError.RpcClientError> => {
  const client: Record<string, unknown> = {}
  for (const rpc of group.requests.values() as Iterable<Rpc.AnyWithProps>) {
    const entry = handlers.unsafeMap.get(rpc.key) as Rpc.Handler<string> | undefined
    if (entry === undefined) throw new Error(`${module} has no handler for ${rpc._tag}`)
    const makePayload = (rpc.payloadSchema as { make?: (input: unknown) => unknown }).make
    const copyPayload = copier(rpc.payloadSchema as AnySchema)
    const copySuccess = copier(rpc.successSchema as AnySchema)
    const copyError = copier(rpc.errorSchema as AnySchema)
    const name = `${module}.${rpc._tag}`
    // The handler sees its own module's context plus the caller's span.
    const isolate = (caller: Context.Context<never>): Context.Context<never> => {
      const span = caller.unsafeMap.get(parentSpanKey) as Tracer.AnySpan | undefined
      return span === undefined ? entry.context : Context.add(entry.context, Tracer.ParentSpan, span)
    }

    const call = (input: unknown, options?: { readonly headers?: Headers.Input }) =>
      Calls.guard(name).pipe(
        Effect.zipRight(Effect.suspend(() => orDie(copyPayload(makePayload ? makePayload(input) : input), `${name} payload`))),
        Effect.flatMap((payload) =>
          Effect.flatMap(RpcClient.currentHeaders, (headers) => {
            const result = entry.handler(payload, {
              clientId: 0,
              headers: options?.headers ? HeadersNs.merge(headers, HeadersNs.fromInput(options.headers)) : headers
            }) as Effect.Effect<unknown, unknown> | Rpc.Wrapper<Effect.Effect<unknown, unknown>>
            const effect = Effect.isEffect(result) ? result : result.value
            if (!Effect.isEffect(effect)) return Effect.die(new Error(`${name}: streaming calls are not supported in process`))
            return effect.pipe(
              Effect.mapInputContext(isolate),
              Effect.matchCauseEffect({
                onSuccess: (value) => orDie(copySuccess(value), `${name} result`),
                onFailure: (cause) => {
                  const failure = Cause.failureOption(cause)
                  if (failure._tag === "None") return Effect.failCause(cause)
                  return Effect.flatMap(orDie(copyError(failure.value), `${name} error`), Effect.fail)
                }
              })
            )
          })
        ),
        Effect.withSpan(name, { kind: "client", captureStackTrace: false })
      )
    // As RpcClient does: `prefix.method` tags nest under `client.prefix`.
    const dot = rpc._tag.indexOf(".")
    if (dot === -1) client[rpc._tag] = call
    else ((client[rpc._tag.slice(0, dot)] ??= {}) as Record<string, unknown>)[rpc._tag.slice(dot + 1)] = call
  }
  return client as RpcClient.RpcClient<Rpcs, RpcClientError.RpcClientError>
}
