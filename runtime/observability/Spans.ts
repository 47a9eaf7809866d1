/**
 * Spans for the calls between modules, made on the call path without a fiber of their own.
 */
import { Chunk, Clock, Context, type Fiber, FiberRef, HashMap, Option, Tracer } from "effect"

/** A span timestamp, as Effect takes it: 0 when the fiber has span timing off. */
export const spanTime = (fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
  fiber.getFiberRef(FiberRef.currentTracerTimingEnabled)
    ? Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeNanos()
    : 0n

/** The links of a span when the fiber adds none (Effect's own `makeSpan` shares one too). */
const noLinks: ReadonlyArray<Tracer.SpanLink> = []

/**
 * The span of a call, made as `Effect.makeSpan` makes it (the fiber's tracer, parent span, span
 * annotations and links), or undefined in the rare cases left to `Effect.makeSpan` itself
 * (tracing disabled for the fiber, or a parent that disables propagation). Not `Effect.makeSpan`
 * itself: it reads `fiber.getFiberRefs()`, which copies the fiber's FiberRefs on every call
 * (nearly 1 µs a call on the bench, a third of what the span costs).
 */
export const startSpan = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  name: string,
  options: Tracer.SpanOptions & { readonly kind: Tracer.SpanKind; readonly attributes: Record<string, unknown> }
): Tracer.Span | undefined => {
  const parent = fiber.currentSpan
  if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return undefined
  if (parent && Context.get(parent.context, Tracer.DisablePropagation)) return undefined
  const inheritedLinks = fiber.getFiberRef(FiberRef.currentTracerSpanLinks)
  const links = Chunk.isEmpty(inheritedLinks) ? noLinks : Chunk.toReadonlyArray(inheritedLinks)
  const span = fiber.currentTracer.span(
    name,
    Option.fromNullable(parent),
    Context.empty(),
    links,
    spanTime(fiber),
    options.kind,
    options
  )
  const annotations = fiber.getFiberRef(FiberRef.currentTracerSpanAnnotations)
  if (HashMap.size(annotations) > 0) HashMap.forEach(annotations, (value, key) => span.attribute(key, value))
  for (const key in options.attributes) span.attribute(key, options.attributes[key])
  return span
}

