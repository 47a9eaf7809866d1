import { describe, expect, it } from "vitest"
import * as RateLimit from "./RateLimit.ts"

describe("RateLimit", () => {
  const clock = () => {
    let now = 1_000_000
    return { now: () => now, advance: (ms: number) => (now += ms) }
  }

  it("allows a burst, then refuses with the seconds until a token is earned", () => {
    const time = clock()
    const limiter = RateLimit.make({ rate: 2, burst: 3 }, time.now)
    expect([1, 2, 3].map(() => limiter.take("a").allowed)).toEqual([true, true, true])
    expect(limiter.take("a")).toEqual({ allowed: false, retryAfterSeconds: 1 })
    time.advance(500)
    expect(limiter.take("a").allowed).toBe(true)
    expect(limiter.take("a").allowed).toBe(false)
  })

  it("keeps one bucket per client", () => {
    const limiter = RateLimit.make({ rate: 1, burst: 1 }, clock().now)
    expect(limiter.take("a").allowed).toBe(true)
    expect(limiter.take("a").allowed).toBe(false)
    expect(limiter.take("b").allowed).toBe(true)
  })

  it("says how long a slow bucket needs: 10 per minute is one every 6 s", () => {
    const limiter = RateLimit.make({ rate: 10 / 60, burst: 10 }, clock().now)
    for (let i = 0; i < 10; i++) limiter.take("ip")
    expect(limiter.take("ip")).toEqual({ allowed: false, retryAfterSeconds: 6 })
  })

  it("refills no further than the burst", () => {
    const time = clock()
    const limiter = RateLimit.make({ rate: 100, burst: 2 }, time.now)
    time.advance(60_000)
    expect([1, 2, 3].map(() => limiter.take("a").allowed)).toEqual([true, true, false])
  })

  it("tells whether a token is there without spending it", () => {
    const time = clock()
    const limiter = RateLimit.make({ rate: 1, burst: 1 }, time.now)
    expect(limiter.has("a")).toBe(true)
    expect(limiter.has("a")).toBe(true)
    limiter.take("a")
    expect(limiter.has("a")).toBe(false)
    time.advance(1000)
    expect(limiter.has("a")).toBe(true)
  })
})
