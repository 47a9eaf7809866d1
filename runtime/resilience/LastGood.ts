/**
 * The last good answers of reads, to serve for a short while when their module cannot answer
 * (unreachable, breaker open, timed out): a fallback for reads whose slightly old value serves a
 * user better than an error (a product page). The answer says how old it is
 * (`Tessera-Stale: <age in seconds>`), so a client can tell.
 *
 * Bounded: at most `capacity` answers, the least recently stored dropped first (a Map keeps
 * insertion order); each kept at most `maxAge`. Effect's `Cache` looks values up and expires
 * them; this keeps the latest value a call produced and is consulted only when the call fails,
 * so it is written here.
 */
import { HttpApp, HttpServerResponse } from "@effect/platform"
import { Clock, Duration, Effect } from "effect"
import { CallError } from "../transport/CallError.ts"

/** The response header that marks a stale answer, with its age in whole seconds. */
export const HEADER = "tessera-stale"

export interface LastGood {
  /**
   * Runs `read`; remembers its value under `key`. When it fails with a CallError and a value
   * under `key` is at most `maxAge` old, answers that value instead and marks the response.
   */
  readonly serve: <A, E, R>(key: string, read: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Answers held now. */
  readonly size: () => number
}

export const make = (options: { readonly maxAge: Duration.Duration; readonly capacity: number }): LastGood => {
  const maxAgeMs = Duration.toMillis(options.maxAge)
  const entries = new Map<string, { readonly value: unknown; readonly at: number }>()
  if (maxAgeMs <= 0) return { serve: (_, read) => read, size: () => 0 }

  const remember = (key: string, value: unknown, at: number) => {
    entries.delete(key)
    entries.set(key, { value, at })
    if (entries.size > options.capacity) entries.delete(entries.keys().next().value!)
  }

  const serve = <A, E, R>(key: string, read: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    read.pipe(
      Effect.tap((value) => Effect.map(Clock.currentTimeMillis, (now) => remember(key, value, now))),
      Effect.catchIf(
        (error): error is E & CallError => error instanceof CallError,
        (error) =>
          Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<A, E> => {
            const kept = entries.get(key)
            if (kept === undefined) return Effect.fail(error)
            const age = now - kept.at
            if (age > maxAgeMs) {
              entries.delete(key)
              return Effect.fail(error)
            }
            const seconds = String(Math.floor(age / 1000))
            return Effect.as(
              HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(HttpServerResponse.setHeader(response, HEADER, seconds))),
              kept.value as A
            ).pipe(Effect.tap(() => Effect.logWarning(`${error.rpc} failed (${error.reason}): answered its last good value, ${seconds} s old`)))
          })
      )
    )

  return { serve, size: () => entries.size }
}
