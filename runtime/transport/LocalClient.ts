/**
 * The in-process transport of a hosted module: how one call is carried when caller and callee
 * share a process, with the same semantics as the remote one (RemoteClient.ts). Clients are built
 * by Client.ts over it, with the same interceptors (metrics, spans) and the same errors.
 *
 * - Payloads, results and typed errors cross through the contract's Schemas (`Copy.ts`): the
 *   other side gets a value that satisfies the contract and that nobody can change under it.
 *   An error the contract does not declare becomes a defect, as it does remotely (a `CallError`
 *   the handler let through dies as itself, so the edge still knows it).
 * - The handler runs in a fiber of its own, started from its module's defaults (`defaults`: the
 *   FiberRefs of the fiber that built the client) with its module's context: nothing of the
 *   caller's reaches it but the current span, the caller's deadline (Deadline.ts) and the caller
 *   in the headers (Caller.carried), exactly what a remote handler gets. The caller's open
 *   transaction, log annotations and minimum log level do not; what the handler does to its
 *   FiberRefs stays with the call.
 * - `discard`: the handler runs detached (without a deadline), the caller gets void at once.
 * - Interrupting the caller interrupts the handler.
 *
 * Written by hand because @effect/rpc's in-process option (`RpcTest.makeClient`) runs a server
 * fiber per call and skips serialization: it is ~20x slower and shares values between caller and
 * callee. Here `prepare` checks and copies the payload, the attempt starts the handler's fiber
 * (Runtime.runFork runs it at once: a handler that does not wait is done when it returns, and
 * the caller reads its exit without suspending), and copies the result. `npm run bench` holds it
 * against calling the handler directly.
 */
import { Headers } from "@effect/platform"
import { type Rpc, RpcClient, type RpcGroup } from "@effect/rpc"
import { Cause, Context, Effect, Either, Exit, Fiber, FiberRefs, type ParseResult, Runtime, type Schema, Tracer } from "effect"
import * as Caller from "../security/Caller.ts"
import * as Client from "./Client.ts"
import { CallError } from "./CallError.ts"
import * as Copy from "./Copy.ts"
import * as Deadline from "./Deadline.ts"
import * as Wire from "./Wire.ts"

type AnySchema = Schema.Schema<any, any, never>

/** What did not match the contract: bounded as on the wire, so no value can make it throw. */
const formatted = (what: string, issue: ParseResult.ParseIssue) => new Error(`${what}: ${Wire.formattedIssue(issue)}`)

/**
 * The fiber settings a handler starts from: its module's (the FiberRefs and runtime flags of the
 * fiber that built the client, in Host the process's), as a remote handler starts from its
 * endpoint's (RpcEndpoint.ts), never the caller's log annotations, log level or anything else.
 */
export type Defaults = Runtime.Runtime<never>

/** The defaults of the fiber that builds the client. */
export const defaults: Effect.Effect<Defaults> = Effect.runtime<never>()

/** The transport to the handlers of `module` in this process. */
export const transport = (
  module: string,
  handlers: Context.Context<never>,
  base: Defaults = Runtime.defaultRuntime
): Client.Transport => ({
  rpc: ({ name, rpc }) => {
    const entry = handlers.unsafeMap.get(rpc.key) as Rpc.Handler<string> | undefined
    if (entry === undefined) throw new Error(`${module} has no handler for ${rpc._tag}`)
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
    /** The handler's runtime without a parent span: its module's context and defaults. */
    const unparented = Runtime.make({ context: entry.context, fiberRefs: base.fiberRefs, runtimeFlags: base.runtimeFlags })

    /** The callee's exit, copied back through the contract. */
    const settle = (exit: Exit.Exit<unknown, unknown>): Exit.Exit<unknown, unknown> => {
      if (Exit.isSuccess(exit)) {
        const copied = copySuccess(exit.value)
        return Either.isRight(copied) ? Exit.succeed(copied.right) : Exit.die(formatted(`${name} result`, copied.left))
      }
      const failure = Cause.failureOption(exit.cause)
      if (failure._tag === "None") return exit
      const copied = copyError(failure.value)
      if (Either.isRight(copied)) return Exit.fail(copied.right)
      // A callee's own call failed and it let the failure through: it dies as itself (as on the wire).
      return Exit.die(failure.value instanceof CallError ? failure.value : formatted(`${name} error`, copied.left))
    }

    return {
      prepare: (input) => {
        const copied = copyPayload(makePayload ? makePayload.call(payloadSchema, input, payloadChecked) : input)
        return Either.isRight(copied) ? copied : Either.left(formatted(`${name} payload`, copied.left))
      },
      attempt: (payload, headers, discard, parent) =>
        Effect.withFiberRuntime<unknown, unknown>((caller) => {
          const result = entry.handler(payload, { clientId: 0, headers }) as
            | Effect.Effect<unknown, unknown>
            | Rpc.Wrapper<Effect.Effect<unknown, unknown>>
          const effect = Effect.isEffect(result) ? result : result.value
          if (!Effect.isEffect(effect)) return Exit.die(new Error(`${name}: streaming calls are not supported in process`))
          // The handler's fiber: its module's context and defaults, the call's span (or the
          // caller's) as parent, the caller's deadline, and only the caller as headers.
          const runtime = parent
            ? Runtime.make({
              context: Context.add(entry.context, Tracer.ParentSpan, parent),
              fiberRefs: base.fiberRefs,
              runtimeFlags: base.runtimeFlags
            })
            : unparented
          const deadline = discard ? Number.POSITIVE_INFINITY : caller.getFiberRef(Deadline.current)
          const carried = Caller.carried(headers)
          const fiber = deadline === Number.POSITIVE_INFINITY && carried === Headers.empty
            ? Runtime.runFork(runtime, effect)
            : Runtime.runFork(runtime, effect, {
              updateRefs: (refs, id) =>
                FiberRefs.updateManyAs(refs, {
                  forkAs: id,
                  entries: [[Deadline.current, [[id, deadline]]], [RpcClient.currentHeaders, [[id, carried]]]]
                })
            })
          if (discard) return Exit.void
          // Most handlers finish without waiting: their fiber is done when it returns.
          const done = fiber.unsafePoll()
          if (done !== null) return settle(done)
          return Effect.async<unknown, unknown>((resume) => {
            fiber.addObserver((exit) => resume(settle(exit)))
            return Fiber.interrupt(fiber)
          })
        })
    }
  }
})

/**
 * The in-process client of `module`: Client.make over this transport, with the standard
 * interceptors unless others are given.
 */
export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  handlers: Context.Context<Rpc.ToHandler<Rpcs>>,
  options: {
    readonly tracing?: boolean
    readonly interceptors?: ReadonlyArray<Client.Interceptor>
    readonly defaults?: Defaults
  } = {}
) =>
  Client.make(
    module,
    group,
    transport(module, handlers as Context.Context<never>, options.defaults),
    options.interceptors ?? Client.standard,
    { tracing: options.tracing ?? true }
  )
