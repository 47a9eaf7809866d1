/**
 * The in-process client of a hosted module: the same type as the remote @effect/rpc client, and
 * the same semantics, without a network or a server fiber.
 *
 * - The payload is copied through the contract's Schema (see `copier`), so the callee gets a
 *   fresh value that satisfies the contract; results and typed errors come back the same way. An
 *   error the contract does not declare becomes a defect, as it does remotely.
 * - The handler runs in its own module's context: nothing of the caller's context reaches it but
 *   the current span (the caller's open transaction, in particular, does not).
 * - Calls made inside a database transaction are refused in every topology (see `Calls.refusal`).
 * - Each call is a span `<module>.<rpc>` carrying `tessera.module`, which the logger reads
 *   (unless `tracing` is off: `TESSERA_RPC_TRACING=false`).
 * - Interrupting the caller interrupts the handler.
 *
 * Written by hand because @effect/rpc's in-process option (`RpcTest.makeClient`) runs a server
 * fiber per call and skips serialization: it is ~20x slower and shares values between caller and
 * callee. The call path is one fiber-runtime step, one context switch and one result step:
 * `npm run bench` holds it against calling the handler directly. Beyond the handler itself, a
 * call's time goes (measured on the bench's echo.get, in µs, roughly: the direct call is ~3) to
 * the context switch (~2.5-3: two FiberRef writes in an uninterruptible region), the span
 * (~2-2.5, its context included), the result's copy (~1.5) and the payload's (~0.3).
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
  ParseResult,
  Schema,
  SchemaAST,
  Tracer
} from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import { spanTime, startSpan } from "../observability/Spans.ts"
import * as Calls from "./Calls.ts"

type AnySchema = Schema.Schema<any, any, never>

const formatted = (what: string, issue: ParseResult.ParseIssue) =>
  new Error(`${what}: ${ParseResult.TreeFormatter.formatIssueSync(issue)}`)

/** Whether `ast` transforms nothing anywhere: its Encoded side is its Type side. */
const untransformed = (ast: SchemaAST.AST) => SchemaAST.encodedBoundAST(ast) === ast

/**
 * Copies a value through `schema`: a fresh value, checked against the contract.
 *
 * In general that is encoding to the wire form and decoding back. Decoding is the pass that
 * builds the fresh value (the objects and arrays the schema describes, anew), and it can often skip
 * the encoding, which would only build a copy for it to read:
 * - a schema that transforms nothing has the same Type and Encoded sides: a valid value is a
 *   valid encoded one, and decoding it checks it and builds the same copy;
 * - a Schema.Class is a transformation from its encoded fields to the class, whose encoding
 *   hands an instance over unchanged to the fields' encoding. When those fields transform
 *   nothing, an instance is itself a valid encoded value, and decoding it checks its fields and
 *   builds a new instance. (Only instances take that path: `instanceof` is what tells a class
 *   from another transformation; anything else, a plain object say, goes the general way.)
 */
const copier = (schema: AnySchema) => {
  const decode = ParseResult.decodeUnknownEither(schema)
  if (untransformed(schema.ast)) return decode
  const encode = ParseResult.encodeUnknownEither(schema)
  const roundTrip = (value: unknown) => Either.flatMap(encode(value), decode)
  if (schema.ast._tag !== "Transformation" || !untransformed(schema.ast.from)) return roundTrip
  const Class = schema as unknown as abstract new(...args: ReadonlyArray<any>) => unknown
  return (value: unknown) => value instanceof Class ? decode(value) : roundTrip(value)
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
    // As RpcClient does, a payload given as fields is built (and checked) by its schema's `make`,
    // which applies constructor defaults. For a schema that transforms nothing, the copy below
    // makes the very check `make` would (decoding it is validating it): `make` skips it.
    const payloadSchema = rpc.payloadSchema as AnySchema & { make?: (input: unknown, disableValidation?: boolean) => unknown }
    const payloadChecked = untransformed(payloadSchema.ast)
    const copyPayload = copier(payloadSchema)
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

    /**
     * Runs the handler's effect with its module's context and `parent` as the current span, ends
     * `span` (this call's own, if traced), puts the caller's context back and settles the result.
     * One uninterruptible region swaps the context in and out, so that the caller's own
     * finalizers see its context even when it is interrupted during the call; only the handler
     * runs interruptibly (if the caller was). Effect.provide would add a region of its own.
     */
    const run = (
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      effect: Effect.Effect<unknown, unknown>,
      parent: Tracer.AnySpan | undefined,
      span: Tracer.Span | undefined
    ) => {
      const callerContext = fiber.currentContext
      const context = parent ? Context.add(entry.context, Tracer.ParentSpan, parent) : entry.context
      return Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          FiberRef.set(FiberRef.currentContext, context),
          Effect.flatMap(Effect.exit(restore(effect)), (exit) => {
            span?.end(spanTime(fiber), exit)
            return Effect.zipRight(FiberRef.set(FiberRef.currentContext, callerContext), settle(exit))
          })
        )
      )
    }

    const call = (input: unknown, options?: { readonly headers?: Headers.Input }) =>
      Effect.withFiberRuntime<unknown, unknown>((fiber) => {
        const refused = Calls.refusal(name, fiber.currentContext)
        if (refused) return Effect.die(refused)
        let payload: Either.Either<unknown, ParseResult.ParseIssue>
        try {
          payload = copyPayload(payloadSchema.make ? payloadSchema.make(input, payloadChecked) : input)
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
