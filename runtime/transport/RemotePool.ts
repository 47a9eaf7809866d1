/**
 * The client of a module that runs as several instances (`inventory=http://a:8080|http://b:8080`,
 * or a DNS name: Topology.ts): one RemoteClient lane (one connection) to each instance, kept as
 * the set changes (Discovery.ts), with the calls spread over them by the balancer
 * (resilience/Balancer.ts: least outstanding requests, a breaker per instance, retries elsewhere).
 *
 * - Instances given as URLs are dialled at start, in parallel (waiting, bounded, for each first
 *   open, as a single peer is);
 * - a DNS name's instances follow its records: a new address is dialled and gets calls once its
 *   connection opens; an address gone gets no new call, and its connection is closed once its
 *   calls in flight are answered (an instance that is stopping finishes them: Startup.ts).
 *   A connection that fails, or a call that finds no instance, asks for a resolution soon.
 */
import type { Rpc, RpcGroup } from "@effect/rpc"
import { Duration, Effect, ExecutionStrategy, Exit, Runtime, Scope } from "effect"
import * as Balancer from "../resilience/Balancer.ts"
import type * as CircuitBreaker from "../resilience/CircuitBreaker.ts"
import type { Peer } from "../Topology.ts"
import * as Client from "./Client.ts"
import * as Discovery from "./Discovery.ts"
import * as RemoteClient from "./RemoteClient.ts"

export interface Options extends RemoteClient.Options {
  /** The breaker of one instance (Policy.Registry.instanceBreaker: in this process's registry). */
  readonly breaker: (url: string) => CircuitBreaker.CircuitBreaker
  /** How a DNS name is resolved (default: the system's). */
  readonly resolver?: Discovery.Resolver | undefined
  /** How often a DNS name is resolved again (`TESSERA_DNS_REFRESH`, default 5 s). */
  readonly refresh?: Duration.DurationInput | undefined
}

/** The default of `TESSERA_DNS_REFRESH`. */
export const DEFAULT_REFRESH = "5 seconds"

/** The pooled client of `module` at `peer`, its balancer, and a way to step its discovery. */
export const make = <Rpcs extends Rpc.Any>(
  module: string,
  group: RpcGroup.RpcGroup<Rpcs>,
  peer: Peer,
  options: Options
) =>
  Effect.gen(function*() {
    const balancer = Balancer.make(module, { breaker: options.breaker, onEmpty: () => kick() })
    const scope = yield* Effect.scope
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    let watch: Discovery.Watch | undefined
    const kick = () => watch?.kick()

    /** Dials `url`; its connection lives in a scope of its own. */
    const dial = (url: string, awaitOpen: boolean) =>
      Effect.gen(function*() {
        const own = yield* Scope.fork(scope, ExecutionStrategy.sequential)
        const lane = yield* Scope.extend(
          RemoteClient.lane(module, group, url, { ...options, awaitOpen, onDown: kick }),
          own
        )
        const member: Balancer.Member = { url, transport: lane.transport, connected: lane.connected, wake: lane.wake }
        return { scope: own, member }
      })
    const members = new Map<string, { readonly scope: Scope.CloseableScope; readonly member: Balancer.Member }>()

    /** The set is now `urls`: new ones dialled, gone ones drained, then closed. */
    const apply = (urls: ReadonlyArray<string>, awaitOpen: boolean) =>
      Effect.suspend(() => {
        const wanted = new Set(urls)
        for (const url of members.keys()) {
          if (wanted.has(url) || !balancer.has(url)) continue
          const { scope: own } = members.get(url)!
          balancer.remove(url, () => {
            members.delete(url)
            runFork(Scope.close(own, Exit.void))
          })
        }
        // One still draining serves again, on the connection it has.
        for (const url of urls) if (members.has(url) && !balancer.has(url)) balancer.add(members.get(url)!.member)
        const added = urls.filter((url) => !members.has(url))
        // Dialled in parallel, added in the order given (health and the admin view list them so).
        return Effect.map(Effect.forEach(added, (url) => dial(url, awaitOpen), { concurrency: "unbounded" }), (dialled) => {
          for (const joined of dialled) {
            balancer.add(joined.member)
            members.set(joined.member.url, joined)
          }
        })
      })

    if (peer._tag === "Urls") {
      yield* apply(peer.urls, true)
    } else {
      let first = true
      watch = yield* Discovery.watch(peer, {
        resolver: options.resolver ?? Discovery.systemResolver,
        every: options.refresh ?? DEFAULT_REFRESH,
        apply: (urls) => {
          const awaitOpen = first
          first = false
          return apply(urls, awaitOpen)
        },
        onProblem: balancer.setProblem
      })
    }

    const transport = balancer.transport(RemoteClient.preparers(group))
    return {
      balancer,
      client: Client.make(module, group, transport, options.interceptors ?? Client.standard, { tracing: options.tracing ?? true }),
      /** Resolves the DNS name now (tests step discovery with it); nothing for URLs. */
      refresh: watch?.refresh ?? Effect.void
    }
  })
