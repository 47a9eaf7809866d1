/**
 * Per-client token buckets: each client may spend `burst` requests at once and earns `rate`
 * requests per second back. A process keeps its buckets in memory, so with several gateway
 * replicas each enforces the limit on its own share of the traffic.
 *
 * Written by hand: Effect's `RateLimiter` throttles a caller (it waits for a token) where the
 * gateway must refuse at once and say when to retry, and it keeps no state per client key.
 */
export interface Limit {
  /** Tokens earned per second. */
  readonly rate: number
  /** Bucket size: how many requests may come at once. */
  readonly burst: number
}

export type Decision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterSeconds: number }

const ALLOWED: Decision = { allowed: true }

/** Buckets this many keys before idle full ones are dropped (a full bucket is the default). */
const SWEEP_AT = 50_000

export const make = (limit: Limit, now: () => number = Date.now) => {
  const buckets = new Map<string, { tokens: number; updated: number }>()

  const refill = (bucket: { tokens: number; updated: number }, at: number) => {
    bucket.tokens = Math.min(limit.burst, bucket.tokens + ((at - bucket.updated) / 1000) * limit.rate)
    bucket.updated = at
  }

  const sweep = (at: number) => {
    for (const [key, bucket] of buckets) {
      refill(bucket, at)
      if (bucket.tokens >= limit.burst) buckets.delete(key)
    }
  }

  /** Spends one token of `key`'s bucket, or says how long until one is earned. */
  const take = (key: string): Decision => {
    const at = now()
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      if (buckets.size >= SWEEP_AT) sweep(at)
      bucket = { tokens: limit.burst, updated: at }
      buckets.set(key, bucket)
    } else {
      refill(bucket, at)
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return ALLOWED
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / limit.rate)) }
  }

  /** Whether `key` has a token to spend now, without spending it. */
  const has = (key: string): boolean => {
    const bucket = buckets.get(key)
    if (bucket === undefined) return true
    refill(bucket, now())
    return bucket.tokens >= 1
  }

  return { take, has, size: () => buckets.size }
}

export type RateLimiter = ReturnType<typeof make>
