/**
 * Logs as JSON lines on stdout: time, level, message, the current trace and span ids, the module
 * whose code logged, the fiber's log annotations and the cause of a failure.
 */
import { Cause, Context, Effect, FiberRef, FiberRefs, HashMap, Inspectable, Layer, Logger, LogLevel, Option, Tracer } from "effect"
import * as Settings from "../Settings.ts"

const message = (value: unknown): unknown => {
  const parts = Array.isArray(value) ? value : [value]
  return parts.length === 1 ? parts[0] : parts
}

/**
 * The span attribute naming the module that handles a call. Every call's span carries it (in
 * process and remote), so a log line names its module by walking up its spans: cheaper than
 * annotating every call's fiber, and true across RPC hops.
 */
export const MODULE_ATTRIBUTE = "tessera.module"

const moduleOf = (span: Tracer.AnySpan): unknown => {
  for (let current: Tracer.AnySpan | undefined = span; current?._tag === "Span";) {
    const module = current.attributes.get(MODULE_ATTRIBUTE)
    if (module !== undefined) return module
    current = Option.getOrUndefined(current.parent)
  }
  return undefined
}

export const logger = Logger.make<unknown, void>((options) => {
  const line: Record<string, unknown> = {
    time: options.date.toISOString(),
    level: options.logLevel.label,
    message: message(options.message)
  }
  const span = FiberRefs.get(options.context, FiberRef.currentContext).pipe(
    Option.flatMap((context) => Context.getOption(context, Tracer.ParentSpan))
  )
  if (Option.isSome(span)) {
    line.traceId = span.value.traceId
    line.spanId = span.value.spanId
    const module = moduleOf(span.value)
    if (module !== undefined) line.module = module
  }
  for (const [key, value] of HashMap.toEntries(options.annotations)) line[key] = value
  if (!Cause.isEmpty(options.cause)) line.cause = Cause.pretty(options.cause, { renderErrorCause: true })
  process.stdout.write(Inspectable.stringifyCircular(line) + "\n")
})

/** `LOG_LEVEL`: trace, debug, info (default), warn, error, fatal or none. */
export const level = Settings.logLevel.config

/** JSON lines at `LOG_LEVEL`. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    // A bad LOG_LEVEL is refused by the start's check (Setting.check), which must be able to log.
    const minimum = yield* Effect.orElseSucceed(level, () => LogLevel.Info)
    return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(minimum))
  })
)
