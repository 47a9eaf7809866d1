import { Cause, Effect, Logger } from "effect"
import { afterEach, describe, expect, it, vi } from "vitest"
import * as JsonLogger from "./JsonLogger.ts"

const captured = () => {
  const lines: Array<string> = []
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk))
    return true
  })
  return lines
}

const logWith = (effect: Effect.Effect<void>) =>
  Effect.runSync(effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, JsonLogger.logger))))

describe("JsonLogger", () => {
  afterEach(() => vi.restoreAllMocks())

  it("writes one JSON line with the module, the trace and the span", () => {
    const lines = captured()
    let ids: { traceId: string; spanId: string } | undefined
    logWith(
      Effect.gen(function*() {
        const span = yield* Effect.currentSpan
        ids = { traceId: span.traceId, spanId: span.spanId }
        yield* Effect.logWarning("stock low")
      }).pipe(Effect.withSpan("Inventory.reserve"), Effect.annotateLogs("module", "inventory"), Effect.orDie)
    )
    expect(lines).toHaveLength(1)
    expect(lines[0]!.endsWith("\n")).toBe(true)
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "WARN", message: "stock low", module: "inventory", ...ids })
  })

  it("names the module of the nearest call span, across nested use-case spans", () => {
    const lines = captured()
    logWith(
      Effect.logInfo("reading").pipe(
        Effect.withSpan("Catalog.get"),
        Effect.withSpan("catalog.get", { attributes: { [JsonLogger.MODULE_ATTRIBUTE]: "catalog" } }),
        Effect.withSpan("Inventory.restock"),
        Effect.withSpan("inventory.restock", { attributes: { [JsonLogger.MODULE_ATTRIBUTE]: "inventory" } })
      )
    )
    expect(JSON.parse(lines[0]!).module).toBe("catalog")
  })

  it("renders the cause of a failure", () => {
    const lines = captured()
    logWith(Effect.logError("failed", Cause.die(new Error("boom"))))
    const line = JSON.parse(lines[0]!)
    expect(line.message).toBe("failed")
    expect(line.cause).toContain("Error: boom")
  })

  it("omits trace fields outside a span", () => {
    const lines = captured()
    logWith(Effect.logInfo("plain"))
    expect(Object.keys(JSON.parse(lines[0]!)).sort()).toEqual(["level", "message", "time"])
  })
})
