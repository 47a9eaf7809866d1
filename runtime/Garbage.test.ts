/**
 * `Garbage.collect` runs a full collection in a process started without `--expose-gc`, and
 * leaves `gc` unexposed to the contexts made after it.
 */
import { Effect } from "effect"
import * as vm from "node:vm"
import { describe, expect, it } from "vitest"
import * as Garbage from "./Garbage.ts"

/** A WeakRef to an object nothing else holds (made in its own function, so no local keeps it). */
const unreferenced = () => new WeakRef({ payload: new Array(1000).fill("garbage") })

describe("Garbage.collect", () => {
  it("collects an object nothing holds", async () => {
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined()
    const ref = unreferenced()
    // A WeakRef's target stays alive until the end of the job that made or read it.
    await new Promise((resolve) => setTimeout(resolve, 0))
    await Effect.runPromise(Garbage.collect)
    expect(ref.deref()).toBeUndefined()
  })

  it("leaves gc unexposed to contexts made afterwards", async () => {
    await Effect.runPromise(Garbage.collect)
    expect(vm.runInNewContext("typeof gc")).toBe("undefined")
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined()
  })
})
