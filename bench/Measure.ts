/** What the benchmarks share: how they drive calls and how they sum up rounds. */

/** `callers` async loops, each awaiting one call at a time until `seconds` pass; calls per second. */
export const promiseLoops = async (call: () => Promise<unknown>, callers: number, seconds: number) => {
  const start = performance.now()
  const deadline = start + seconds * 1000
  let calls = 0
  const loop = async () => {
    while (performance.now() < deadline) {
      await call()
      calls++
    }
  }
  await Promise.all(Array.from({ length: callers }, loop))
  return calls / ((performance.now() - start) / 1000)
}

/** The median of `xs` (the mean of the middle two for an even count). */
export const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
