import type { Headers } from "@effect/platform"
import { Rpc, RpcClient, RpcGroup } from "@effect/rpc"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, DateTime, Deferred, Effect, Exit, Fiber, FiberRef, Layer, Option, Schema, type Tracer } from "effect"
import { MODULE_ATTRIBUTE } from "../observability/JsonLogger.ts"
import * as LocalClient from "./LocalClient.ts"

class Widget extends Schema.Class<Widget>("test/Widget")({
  id: Schema.String,
  tags: Schema.Array(Schema.String),
  madeAt: Schema.Date
}) {}

/** A class whose fields transform nothing (its copies skip the encoding pass; see `copier`). */
class Label extends Schema.Class<Label>("test/Label")({
  text: Schema.NonEmptyString,
  aliases: Schema.Array(Schema.String),
  size: Schema.Struct({ width: Schema.Int, height: Schema.Int })
}) {}

/** A class given whole as a payload schema. */
class Print extends Schema.Class<Print>("test/Print")({ label: Label, copies: Schema.Int }) {}

/** Every field immutable: an instance is handed over as it is (see Copy.ts). */
class Badge extends Schema.Class<Badge>("test/Badge")({
  name: Schema.NonEmptyString,
  size: Schema.Int,
  issuedAt: Schema.DateTimeUtc
}) {}

class WidgetNotFound extends Schema.TaggedError<WidgetNotFound>()("WidgetNotFound", { id: Schema.String }) {}

/** Not part of the contract: a handler failing with it breaks the contract. */
class Undeclared extends Schema.TaggedError<Undeclared>()("Undeclared", { reason: Schema.String }) {}

class WidgetRpcs extends RpcGroup.make(
  Rpc.make("get", { payload: { id: Schema.String }, success: Widget, error: WidgetNotFound }),
  Rpc.make("save", { payload: { widget: Widget, name: Schema.NonEmptyString }, success: Widget }),
  Rpc.make("probe", { payload: { note: Schema.String } }),
  Rpc.make("label", {
    payload: { text: Schema.String, aliases: Schema.Array(Schema.String), size: Schema.Struct({ width: Schema.Int }) },
    success: Label
  }),
  Rpc.make("print", { payload: Print, success: Schema.Int }),
  Rpc.make("wait", { payload: { note: Schema.String } }),
  Rpc.make("badge", {
    payload: Schema.Struct({
      name: Schema.String,
      size: Schema.Int.pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1))
    }),
    success: Badge
  })
) {}

/** Something the caller's context holds; the handler must not see it. */
class CallerThing extends Context.Tag("test/CallerThing")<CallerThing, string>() {}

/** A FiberRef the `probe` handler sets: the caller's own value must survive the call. */
const touched = FiberRef.unsafeMake("untouched")

/** Something the handler's own module provides. */
class ModuleThing extends Context.Tag("test/ModuleThing")<ModuleThing, string>() {}

interface Seen {
  readonly payloads: Array<unknown>
  readonly returned: Array<unknown>
  callerThing?: Option.Option<string>
  moduleThing?: string
  span?: Option.Option<Tracer.Span>
  headers?: Headers.Headers
  /** Completed when `wait` has started, and when it was interrupted. */
  readonly waiting: Deferred.Deferred<void>
  readonly interrupted: Deferred.Deferred<void>
}

const madeAt = new Date("2026-01-02T03:04:05.678Z")

const handlers = (seen: Seen) =>
  WidgetRpcs.toLayer({
    get: ({ id }) => {
      seen.payloads.push(id)
      switch (id) {
        case "missing":
          return Effect.fail(new WidgetNotFound({ id }))
        case "undeclared":
          return Effect.fail(new Undeclared({ reason: "not in the contract" })) as unknown as Effect.Effect<Widget>
        case "boom":
          return Effect.die(new Error("handler blew up"))
        default: {
          const widget = new Widget({ id, tags: ["a"], madeAt })
          seen.returned.push(widget)
          return Effect.succeed(widget)
        }
      }
    },
    save: (payload) => {
      seen.payloads.push(payload)
      return Effect.succeed(payload.widget)
    },
    probe: (payload, { headers }) =>
      Effect.gen(function*() {
        seen.payloads.push(payload)
        seen.headers = headers
        seen.callerThing = yield* Effect.serviceOption(CallerThing)
        seen.moduleThing = yield* ModuleThing
        seen.span = yield* Effect.option(Effect.currentSpan)
        yield* FiberRef.set(touched, "set by the handler")
      }),
    label: (payload) => {
      seen.payloads.push(payload)
      const size = { width: payload.size.width, height: 1 }
      switch (payload.text) {
        case "plain":
          // Not an instance: converted through the schema, as it would be on the wire.
          return Effect.succeed({ text: "plain", aliases: [...payload.aliases], size } as unknown as Label)
        case "invalid":
          // An instance that skipped its constructor's check breaks the contract.
          return Effect.succeed(new Label({ text: "", aliases: [], size }, true))
        default: {
          const label = new Label({ text: payload.text, aliases: payload.aliases, size })
          seen.returned.push(label)
          return Effect.succeed(label)
        }
      }
    },
    print: (payload) => {
      seen.payloads.push(payload)
      return Effect.succeed(payload.copies)
    },
    badge: (payload) => {
      seen.payloads.push(payload)
      const issuedAt = DateTime.unsafeMake("2026-01-02T03:04:05Z")
      // A name of "" makes an instance that skipped its constructor's check.
      const badge = new Badge({ name: payload.name, size: payload.size, issuedAt }, payload.name === "")
      seen.returned.push(badge)
      return Effect.succeed(badge)
    },
    wait: (payload) => {
      seen.payloads.push(payload)
      return Deferred.succeed(seen.waiting, undefined).pipe(
        Effect.zipRight(Effect.never),
        Effect.onInterrupt(() => Deferred.succeed(seen.interrupted, undefined))
      )
    }
  }).pipe(Layer.provide(Layer.succeed(ModuleThing, "the module's own")))

const setupWith = (options: { readonly tracing?: boolean }) =>
  Effect.gen(function*() {
    const seen: Seen = {
      payloads: [],
      returned: [],
      waiting: yield* Deferred.make<void>(),
      interrupted: yield* Deferred.make<void>()
    }
    const context = yield* Layer.build(handlers(seen))
    return { seen, client: LocalClient.make("widgets", WidgetRpcs, context, options) }
  })

const setup = setupWith({})

const defect = <A, E>(exit: Exit.Exit<A, E>): unknown => {
  if (Exit.isSuccess(exit)) throw new Error("expected a defect, got a success")
  expect(Cause.failureOption(exit.cause)).toEqual(Option.none())
  return Option.getOrThrow(Cause.dieOption(exit.cause))
}

const ancestors = (span: Tracer.AnySpan): Array<string> => {
  const names: Array<string> = []
  let current: Option.Option<Tracer.AnySpan> = Option.some(span)
  while (Option.isSome(current)) {
    const s = current.value
    names.push(s._tag === "Span" ? s.name : `external:${s.spanId}`)
    current = s._tag === "Span" ? s.parent : Option.none()
  }
  return names
}

describe("LocalClient", () => {
  it.scoped("dies with a short message, without calling the handler, for a payload nested thousands deep", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      let deep: unknown = "x"
      for (let i = 0; i < 5_000; i++) deep = [deep]
      const error = defect(yield* Effect.exit(client.get({ id: deep as string })))
      expect(error).toBeInstanceOf(Error)
      expect((error as Error).message).toMatch(/^widgets\.get payload: /)
      expect((error as Error).message.length).toBeLessThan(1_000)
      expect(seen.payloads).toEqual([])
    }))

  it.scoped("returns a fresh instance of the success class", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const widget = yield* client.get({ id: "w1" })
      expect(widget).toBeInstanceOf(Widget)
      expect(widget).toEqual(new Widget({ id: "w1", tags: ["a"], madeAt }))
      expect(widget.madeAt).toBeInstanceOf(Date)
      const [returned] = seen.returned as Array<Widget>
      expect(widget).not.toBe(returned)
      expect(widget.tags).not.toBe(returned!.tags)
      expect(widget.madeAt).not.toBe(returned!.madeAt)
      ;(widget.tags as Array<string>).push("mutated")
      widget.madeAt.setTime(0)
      expect(returned!.tags).toEqual(["a"])
      expect(returned!.madeAt.toISOString()).toBe("2026-01-02T03:04:05.678Z")
    }))

  it.scoped("hands the callee a fresh copy of the payload, and the caller a fresh copy of the result", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const sent = new Widget({ id: "w2", tags: ["x", "y"], madeAt: new Date(madeAt) })
      const result = yield* client.save({ widget: sent, name: "second" })
      const received = seen.payloads[0] as { readonly widget: Widget; readonly name: string }
      expect(received.widget).toBeInstanceOf(Widget)
      expect(received.widget).toEqual(sent)
      expect(received.widget).not.toBe(sent)
      expect(received.widget.tags).not.toBe(sent.tags)
      expect(received.widget.madeAt).not.toBe(sent.madeAt)
      expect(result).toEqual(sent)
      expect(result).not.toBe(sent)
      expect(result).not.toBe(received.widget)
      sent.madeAt.setTime(0)
      expect(received.widget.madeAt.toISOString()).toBe("2026-01-02T03:04:05.678Z")
    }))

  it.scoped("delivers a declared error as an instance in the typed error channel", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      const error = yield* Effect.flip(client.get({ id: "missing" }))
      expect(error).toBeInstanceOf(WidgetNotFound)
      expect(error).toMatchObject({ _tag: "WidgetNotFound", id: "missing" })
    }))

  it.scoped("turns an error the contract does not declare into a defect", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      const exit = yield* Effect.exit(client.get({ id: "undeclared" }))
      expect(String(defect(exit))).toContain("widgets.get error")
    }))

  it.scoped("passes a handler defect through as a defect", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      const exit = yield* Effect.exit(client.get({ id: "boom" }))
      const error = defect(exit)
      expect(error).toBeInstanceOf(Error)
      expect((error as Error).message).toBe("handler blew up")
    }))

  it.scoped("refuses a payload that violates its schema as a defect, without calling the handler", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const widget = new Widget({ id: "w3", tags: [], madeAt })
      const empty = yield* Effect.exit(client.save({ widget, name: "" }))
      defect(empty)
      const wrongType = yield* Effect.exit(client.get({ id: 42 as unknown as string }))
      defect(wrongType)
      const notAnInstance = yield* Effect.exit(
        client.save({ widget: { id: "w4", tags: [], madeAt } as unknown as Widget, name: "plain" })
      )
      defect(notAnInstance)
      expect(seen.payloads).toEqual([])
    }))

  it.scoped("runs the handler in its own module's context, not the caller's", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      yield* client.probe({ note: "isolation" }).pipe(Effect.provideService(CallerThing, "the caller's"))
      expect(seen.callerThing).toEqual(Option.none())
      expect(seen.moduleThing).toBe("the module's own")
    }))

  it.scoped("gives the handler the caller's span as parent", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const outer = yield* client.probe({ note: "tracing" }).pipe(
        Effect.zipRight(Effect.currentSpan),
        Effect.withSpan("outer")
      )
      const span = Option.getOrThrow(seen.span!)
      expect(span.traceId).toBe(outer.traceId)
      expect(ancestors(span)).toEqual(["widgets.probe", "outer"])
    }))

  it.scoped("makes each call a client span carrying the module and the caller's span annotations, ended", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      yield* client.probe({ note: "span" }).pipe(Effect.annotateSpans("request", "r-1"), Effect.withSpan("outer"))
      const span = Option.getOrThrow(seen.span!)
      expect(span._tag).toBe("Span")
      const own = span as Tracer.Span
      expect(own.name).toBe("widgets.probe")
      expect(own.kind).toBe("client")
      expect(own.attributes.get(MODULE_ATTRIBUTE)).toBe("widgets")
      expect(own.attributes.get("request")).toBe("r-1")
      expect(own.status._tag).toBe("Ended")
    }))

  it.scoped("with the tracer disabled for the caller, still calls the handler", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      yield* client.probe({ note: "tracer disabled" }).pipe(Effect.withTracerEnabled(false))
      expect(seen.payloads).toEqual([{ note: "tracer disabled" }])
      expect(Option.getOrThrow(seen.span!).spanId).toBe("noop")
    }))

  it.scoped("with tracing off, makes no span of its own but keeps the caller's as parent", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setupWith({ tracing: false })
      yield* client.probe({ note: "untraced" }).pipe(Effect.withSpan("outer"))
      expect(ancestors(Option.getOrThrow(seen.span!))).toEqual(["outer"])
      yield* client.probe({ note: "untraced, no caller span" }).pipe(Effect.provideService(CallerThing, "x"))
      expect(seen.callerThing).toEqual(Option.none())
    }))

  it.scoped("dies, without calling the handler, when called inside a database transaction", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const conn = {}
      const exit = yield* Effect.exit(
        client.probe({ note: "in a transaction" }).pipe(
          Effect.provideService(SqlClient.TransactionConnection, [conn as any, 0])
        )
      )
      const error = defect(exit)
      expect(error).toBeInstanceOf(Error)
      expect((error as Error).message).toContain("widgets.probe was called inside a database transaction")
      expect(seen.payloads).toEqual([])
    }))

  it.scoped("passes headers given per call and by RpcClient.withHeaders to the handler", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      yield* client.probe({ note: "headers" }, { headers: { "X-Per-Call": "1", "x-shared": "call" } }).pipe(
        RpcClient.withHeaders({ "x-ambient": "2", "x-shared": "ambient" })
      )
      expect(seen.headers).toMatchObject({ "x-per-call": "1", "x-ambient": "2", "x-shared": "call" })
    }))

  it.scoped("passes no headers when none are given", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      yield* client.probe({ note: "no headers" })
      expect({ ...seen.headers }).toEqual({})
    }))

  it.scoped("copies a class whose fields transform nothing, sharing nothing either way", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const sent = { text: "l1", aliases: ["a", "b"], size: { width: 3 } }
      const label = yield* client.label(sent)
      const [received] = seen.payloads as Array<typeof sent>
      expect(received).toEqual(sent)
      expect(received).not.toBe(sent)
      expect(received!.aliases).not.toBe(sent.aliases)
      expect(received!.size).not.toBe(sent.size)
      const [returned] = seen.returned as Array<Label>
      expect(label).toBeInstanceOf(Label)
      expect(label).toEqual(new Label({ text: "l1", aliases: ["a", "b"], size: { width: 3, height: 1 } }))
      expect(label).not.toBe(returned)
      expect(label.aliases).not.toBe(returned!.aliases)
      expect(label.size).not.toBe(returned!.size)
    }))

  it.scoped("hands over an instance of a class of immutable fields as it is, once its fields are checked", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const badge = yield* client.badge({ name: "b1" })
      expect(seen.payloads).toEqual([{ name: "b1", size: 1 }])
      expect(badge).toBe(seen.returned[0])
      const broken = yield* Effect.exit(client.badge({ name: "" }))
      expect(String(defect(broken))).toContain("widgets.badge result")
    }))

  it.scoped("checks such a class's instances: one that breaks the schema is a defect", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      const exit = yield* Effect.exit(client.label({ text: "invalid", aliases: [], size: { width: 1 } }))
      expect(String(defect(exit))).toContain("widgets.label result")
    }))

  it.scoped("builds an instance of the success class from a plain value that fits it", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      const label = yield* client.label({ text: "plain", aliases: ["p"], size: { width: 2 } })
      expect(label).toBeInstanceOf(Label)
      expect(label).toEqual(new Label({ text: "plain", aliases: ["p"], size: { width: 2, height: 1 } }))
    }))

  it.scoped("builds a payload given as fields with its class, and copies it", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      const label = new Label({ text: "l2", aliases: [], size: { width: 1, height: 1 } })
      expect(yield* client.print({ label, copies: 2 })).toBe(2)
      const [received] = seen.payloads as Array<Print>
      expect(received).toBeInstanceOf(Print)
      expect(received!.label).toBeInstanceOf(Label)
      expect(received!.label).toEqual(label)
      expect(received!.label).not.toBe(label)
      defect(yield* Effect.exit(client.print({ label, copies: 1.5 })))
    }))

  it.scoped("keeps what the handler does to its fiber's FiberRefs to the call, as a remote call does", () =>
    Effect.gen(function*() {
      const { client } = yield* setup
      yield* FiberRef.set(touched, "the caller's")
      yield* client.probe({ note: "touch" })
      expect(yield* FiberRef.get(touched)).toBe("the caller's")
    }))

  it.scoped("an interrupted caller stays interrupted: its recovery does not run", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      let recovered = false
      const fiber = yield* client.wait({ note: "interrupt me" }).pipe(
        Effect.catchAllCause(() => Effect.sync(() => (recovered = true))),
        Effect.fork
      )
      yield* Deferred.await(seen.waiting)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(recovered).toBe(false)
    }))

  it.scoped("interrupts the handler when the caller is interrupted; the caller's finalizers see its own context", () =>
    Effect.gen(function*() {
      const { client, seen } = yield* setup
      let finalizerSaw: Option.Option<string> | undefined
      const fiber = yield* client.wait({ note: "interrupt me" }).pipe(
        Effect.onInterrupt(() =>
          Effect.serviceOption(CallerThing).pipe(Effect.map((thing) => (finalizerSaw = thing)))
        ),
        Effect.provideService(CallerThing, "the caller's"),
        Effect.fork
      )
      yield* Deferred.await(seen.waiting)
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(seen.interrupted)
      expect(finalizerSaw).toEqual(Option.some("the caller's"))
    }))

  it.scoped("refuses to build without a handler for every call", () =>
    Effect.gen(function*() {
      const { seen } = yield* setup
      const context = yield* Layer.build(handlers(seen))
      const probeKey = WidgetRpcs.requests.get("probe")!.key
      const partial = Context.unsafeMake<never>(
        new Map([...context.unsafeMap].filter(([key]) => key !== probeKey))
      ) as typeof context
      expect(() => LocalClient.make("widgets", WidgetRpcs, partial)).toThrow("widgets has no handler for probe")
    }))
})

// For a group whose tags are prefixed (`RpcGroup.prefix("stock.")` or `Rpc.make("stock.get")`),
// RpcClient nests the methods (`client.stock.get`), and so does the type.
describe("LocalClient with a prefixed group", () => {
  const Plain = RpcGroup.make(Rpc.make("get", { payload: { id: Schema.String }, success: Schema.String }))
  const Prefixed = Plain.prefix("stock.")

  it.scoped("nests prefixed calls as RpcClient does", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(Prefixed.toLayer({ "stock.get": ({ id }) => Effect.succeed(`got ${id}`) }))
      const client = LocalClient.make("warehouse", Prefixed, context)
      expect(yield* Effect.suspend(() => client.stock.get({ id: "s1" }))).toBe("got s1")
    }))
})
