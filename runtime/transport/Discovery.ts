/**
 * The instances of a module located by a DNS name (`inventory=dns://inventory-headless:8080`,
 * Topology.ts): every address the name resolves to is one instance, reached at the given port.
 * A Kubernetes headless Service answers with one record per ready pod, so the set follows the
 * pods as they come and go.
 *
 * The name is resolved at start, then every `TESSERA_DNS_REFRESH` (5 s), and again soon after a
 * connection to an instance fails (at most once a second): a pod that went away is noticed at
 * once, not at the next tick. A resolution that fails or finds nothing keeps the last good set
 * (a DNS server that hiccups must not empty a module's instances).
 *
 * The resolver is a seam (`Resolver`): the system's (`node:dns` lookup, which reads /etc/hosts
 * as the rest of the process does, and answers A and AAAA records) unless a test gives its own.
 */
import { Duration, Effect, Queue } from "effect"
import * as dns from "node:dns/promises"
import type { Peer } from "../Topology.ts"

/** The addresses `host` resolves to now (IPv4 or IPv6, as text). */
export type Resolver = (host: string) => Promise<ReadonlyArray<string>>

/** Every A and AAAA record of `host`, as the system resolves it. */
export const systemResolver: Resolver = (host) =>
  dns.lookup(host, { all: true, verbatim: true }).then((found) => found.map((a) => a.address))

type Dns = Extract<Peer, { readonly _tag: "Dns" }>

/** The URL of the instance at `address`. */
export const instanceUrl = (peer: Dns, address: string): string =>
  `http://${address.includes(":") ? `[${address}]` : address}:${peer.port}${peer.path}`

/** The longest one resolution may take. */
const RESOLVE_TIMEOUT = Duration.seconds(5)
/** The least time between two resolutions asked for by failing connections. */
const MIN_GAP = Duration.seconds(1)

export interface Watch {
  /** Asks for a resolution soon (a connection failed). */
  readonly kick: () => void
  /** Resolves now and applies the set if it changed (tests call it to step). */
  readonly refresh: Effect.Effect<void>
}

/**
 * Watches `peer`'s name: resolves it now (waiting, bounded, for the first answer), and in the
 * background with the scope, handing each new set of instance URLs (sorted) to `apply`.
 */
export const watch = (
  peer: Dns,
  options: {
    readonly resolver: Resolver
    readonly every: Duration.DurationInput
    readonly apply: (urls: ReadonlyArray<string>) => Effect.Effect<void>
    /** Why the last resolution failed (`undefined` once one succeeds). */
    readonly onProblem: (problem: string | undefined) => void
  }
) =>
  Effect.gen(function*() {
    const kicks = yield* Queue.sliding<void>(1)
    let current: ReadonlyArray<string> = []
    let logged: string | undefined
    const name = `dns://${peer.host}:${peer.port}`

    const failed = (problem: string) =>
      Effect.suspend(() => {
        options.onProblem(`${name} did not resolve: ${problem}`)
        if (logged === problem) return Effect.void
        logged = problem
        return Effect.logWarning(
          `${name} did not resolve (${problem}); keeping the ${current.length} instance(s) known: ${current.join(", ") || "none"}`
        )
      })

    const refresh = Effect.tryPromise(() => options.resolver(peer.host)).pipe(
      Effect.timeoutFail({ duration: RESOLVE_TIMEOUT, onTimeout: () => new Error(`no answer in ${Duration.format(RESOLVE_TIMEOUT)}`) }),
      Effect.matchEffect({
        onFailure: (error) => failed(error.cause instanceof Error ? error.cause.message : error.message),
        onSuccess: (addresses) => {
          if (addresses.length === 0) return failed("no address")
          const urls = [...new Set(addresses.map((a) => instanceUrl(peer, a)))].sort()
          logged = undefined
          options.onProblem(undefined)
          if (urls.length === current.length && urls.every((url, i) => url === current[i])) return Effect.void
          const before = current
          current = urls
          return Effect.zipRight(
            Effect.logInfo(`${name} resolves to ${urls.join(", ")}${before.length > 0 ? ` (was ${before.join(", ")})` : ""}`),
            options.apply(urls)
          )
        }
      })
    )

    yield* refresh
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          Effect.sleep(MIN_GAP),
          Effect.zipRight(
            Effect.raceFirst(Effect.sleep(Duration.max(Duration.zero, Duration.subtract(options.every, MIN_GAP))), Queue.take(kicks)),
            refresh
          )
        )
      ).pipe(Effect.interruptible)
    )
    const watching: Watch = { kick: () => void kicks.unsafeOffer(undefined), refresh }
    return watching
  })
