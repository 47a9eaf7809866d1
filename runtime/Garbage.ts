/**
 * One full garbage collection, once the process is ready (Startup.ts runs it just after the
 * hand-over).
 *
 * Why: starting a process allocates far more than it keeps (every module's code evaluated, its
 * schemas built, migrations read and run, PGlite's files read), and V8 collects only when
 * something allocates: a process that falls idle once ready keeps that garbage resident, with a
 * young generation grown to its largest, for as long as it stays idle. On Deno (V8 13) this
 * collection also gives back the young generation and the emptied pages: the embedded
 * all-in-one held 327 MB at idle after a first boot, 241 MB with it (`npm run bench`, startup).
 * Node 20's V8 (11.3) collects but keeps its pages unless allocation has been slow for seconds,
 * so on Node the figures do not move (catalog alone: 122 MB before and after; its live heap is
 * 31 MB); the pause is the same small one.
 *
 * Neither Node nor Deno offers a collection to a program started without `--expose-gc`: V8's
 * flag is set for the moment it takes to get its `gc` function from a new context, then unset,
 * as jest-leak-detector does.
 */
import { Effect } from "effect"
import * as v8 from "node:v8"
import * as vm from "node:vm"

/** V8's `gc` function, or undefined where the runtime does not give it (the program goes on without). */
const gcFunction = (): (() => void) | undefined => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === "function") return exposed
  try {
    v8.setFlagsFromString("--expose-gc")
    const gc = vm.runInNewContext("gc") as unknown
    return typeof gc === "function" ? (gc as () => void) : undefined
  } catch {
    return undefined
  } finally {
    v8.setFlagsFromString("--no-expose-gc")
  }
}

/** Runs one full, synchronous collection (a pause of tens of milliseconds), if the runtime allows it. */
export const collect: Effect.Effect<void> = Effect.sync(() => gcFunction()?.())
