/**
 * Spreads the calls to a module that runs as several instances over them (ARCHITECTURE.md,
 * Resilience), as one transport (transport/Client.ts) over one transport per instance
 * (transport/RemotePool.ts keeps them, one connection each):
 *
 * - each attempt goes to the instance with the fewest calls in flight from this process (least
 *   outstanding requests), of those the one chosen longest ago, so that a slow or stuck instance gets fewer calls
 *   and idle ones share the load evenly;
 * - each instance has its own circuit breaker (CircuitBreaker.ts): one whose breaker would refuse
 *   is skipped; when every instance's would, the call fails as one breaker does, NotSent /
 *   BreakerOpen, with the soonest `retryAfterMs`;
 * - an instance whose connection is not open (or whose peer said it is shutting down) is chosen
 *   only when none is open: its call then fails NotSent at once, as a single peer's does, and
 *   asks every instance not connected to dial now rather than at the end of its backoff, so
 *   that an instance just restarted takes calls again as soon as it serves. Such an attempt,
 *   never sent, is not its breaker's to judge: the connection's state already keeps calls
 *   away from it, and failures counted while it was down would keep its breaker open, the
 *   instance refused, for `openFor` after it is back (with the other instance then
 *   restarting, no instance would take a call);
 * - a call's further attempts (the policy's retry) go to another instance than the one that just
 *   failed, when there is one that can take it;
 * - an instance removed from the set (discovery, Discovery.ts) gets no new call, and is closed
 *   once its calls in flight are done.
 *
 * Written here because no library balances Effect calls over a changing set with a breaker each.
 * Plain counters changed synchronously on the calling fiber: the choice is one synchronous step.
 */
import { Clock, Context, Effect, Exit } from "effect"
import { CallError } from "../transport/CallError.ts"
import type * as Client from "../transport/Client.ts"
import type * as CircuitBreaker from "./CircuitBreaker.ts"

/** One instance as its transport sees it. */
export interface Member {
  /** `http://10.0.0.7:8080`. */
  readonly url: string
  readonly transport: Client.Transport
  /** Whether its connection is open now (and takes new calls). */
  readonly connected: () => boolean
  /** Asks a connection that is not open to be dialled now (RemoteClient.Lane.wake). */
  readonly wake?: (() => void) | undefined
}

/** What the admin view and health show of an instance. */
export interface InstanceView {
  readonly url: string
  readonly connected: boolean
  /** Calls from this process in flight to it. */
  readonly outstanding: number
  /** Removed from the set; closed once its calls in flight are done. */
  readonly draining: boolean
  readonly breaker: CircuitBreaker.Snapshot
}

interface Instance {
  readonly url: string
  readonly member: Member
  readonly breaker: CircuitBreaker.CircuitBreaker
  readonly carriers: Map<string, Client.Carrier>
  outstanding: number
  /** When it was last chosen (a count of choices): ties go to the one chosen longest ago. */
  chosenAt: number
  draining: boolean
  /** Runs once a draining instance has no call in flight. */
  onIdle: (() => void) | undefined
}

export interface Balancer {
  readonly target: string
  /** Adds an instance; one known already (draining or not) is kept as it is, and serves again. */
  readonly add: (member: Member) => void
  /** Stops sending `url` new calls; `onIdle` runs once its calls in flight are done (at once if none). */
  readonly remove: (url: string, onIdle: () => void) => void
  /** Whether `url` is in the set (not draining). */
  readonly has: (url: string) => boolean
  /** The instances in the set (not draining) and whether each one's connection is open. */
  readonly members: () => ReadonlyArray<{ readonly url: string; readonly connected: boolean }>
  /** Says why no instance is known, for the failure of calls made meanwhile (`undefined`: clear it). */
  readonly setProblem: (problem: string | undefined) => void
  /**
   * The instance for the next attempt at `now` (Clock millis), another than `avoid` when one can
   * take it; a CallError when none can.
   */
  readonly pick: (info: { readonly name: string }, avoid: string | undefined, now: number) => string | CallError
  /** The transport over the instances: each attempt picks one. `prepare` is the module's codec. */
  readonly transport: (prepare: (info: { readonly tag: string; readonly name: string }) => Client.Carrier["prepare"]) => Client.Transport
  readonly views: Effect.Effect<ReadonlyArray<InstanceView>>
}

export const make = (
  target: string,
  options: {
    /** The breaker of one instance (Policy.Registry.instanceBreaker). */
    readonly breaker: (url: string) => CircuitBreaker.CircuitBreaker
    /** Told when a call finds no instance at all (discovery resolves again). */
    readonly onEmpty?: () => void
  }
): Balancer => {
  const instances: Array<Instance> = []
  const byUrl = new Map<string, Instance>()
  /** Choices made so far. */
  let choices = 0
  let problem: string | undefined

  const add = (member: Member) => {
    const known = byUrl.get(member.url)
    if (known !== undefined) {
      known.draining = false
      known.onIdle = undefined
      return
    }
    const instance: Instance = {
      url: member.url,
      member,
      breaker: options.breaker(member.url),
      carriers: new Map(),
      outstanding: 0,
      chosenAt: 0,
      draining: false,
      onIdle: undefined
    }
    instances.push(instance)
    byUrl.set(member.url, instance)
  }

  const forget = (instance: Instance) => {
    instances.splice(instances.indexOf(instance), 1)
    byUrl.delete(instance.url)
    const idle = instance.onIdle
    instance.onIdle = undefined
    idle?.()
  }

  const remove = (url: string, onIdle: () => void) => {
    const instance = byUrl.get(url)
    if (instance === undefined) return onIdle()
    instance.draining = true
    instance.onIdle = onIdle
    if (instance.outstanding === 0) forget(instance)
  }

  const release = (instance: Instance) => {
    instance.outstanding--
    if (instance.draining && instance.outstanding === 0) forget(instance)
  }

  const choose = (avoid: string | undefined, now: number): Instance | undefined => {
    let best: Instance | undefined
    let bestRank = 0
    for (const instance of instances) {
      if (instance.draining || !instance.breaker.admits(now)) continue
      // Open connections first, then not the instance that just failed, then the fewest in
      // flight, then the one chosen longest ago.
      const rank = (instance.member.connected() ? 0 : 2 ** 40) + (instance.url === avoid ? 2 ** 39 : 0) + instance.outstanding
      if (best === undefined || rank < bestRank || (rank === bestRank && instance.chosenAt < best.chosenAt)) {
        best = instance
        bestRank = rank
      }
    }
    if (best !== undefined) best.chosenAt = ++choices
    return best
  }

  const refusal = (info: { readonly name: string }, now: number): CallError => {
    const serving = instances.filter((i) => !i.draining)
    if (serving.length === 0) {
      options.onEmpty?.()
      return new CallError({
        module: target,
        rpc: info.name,
        kind: "NotSent",
        reason: "Unreachable",
        message: `${info.name} was not sent: no instance of ${target} is known${problem === undefined ? "" : ` (${problem})`}`
      })
    }
    return new CallError({
      module: target,
      rpc: info.name,
      kind: "NotSent",
      reason: "BreakerOpen",
      message: `${info.name} was not sent: the circuit breakers of all ${serving.length} instances of ${target} are open`,
      retryAfterMs: Math.min(...serving.map((i) => i.breaker.retryAfterMs(now)))
    })
  }

  const pick = (info: { readonly name: string }, avoid: string | undefined, now: number) =>
    choose(avoid, now)?.url ?? refusal(info, now)

  const transport = (prepare: (info: { readonly tag: string; readonly name: string }) => Client.Carrier["prepare"]): Client.Transport => ({
    rpc: (info) => {
      const carrierOf = (instance: Instance) => {
        let carrier = instance.carriers.get(info.tag)
        if (carrier === undefined) {
          carrier = instance.member.transport.rpc(info)
          instance.carriers.set(info.tag, carrier)
        }
        return carrier
      }
      // What the breaker reads of a call: whom it goes to and its name.
      const call = { module: target, name: info.name, idempotent: false }
      return {
        prepare: prepare(info),
        attempt: (prepared, headers, discard, parent, attemptMs) => {
          // Made once per call: a retry runs this effect again, and goes elsewhere if it can.
          let last: string | undefined
          return Effect.uninterruptibleMask((restore) =>
            Effect.withFiberRuntime<unknown, unknown>((fiber) => {
              const now = Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
              const instance = choose(last, now)
              if (instance === undefined) return Exit.fail(refusal(info, now))
              last = instance.url
              const attempt = carrierOf(instance).attempt(prepared, headers, discard, parent, attemptMs)
              if (!instance.member.connected()) {
                // None is connected: each is asked to dial now; this attempt fails NotSent at
                // once (unless its connection opened meanwhile), outside the breaker.
                for (const other of instances) if (!other.draining && !other.member.connected()) other.member.wake?.()
                return restore(attempt)
              }
              instance.outstanding++
              return Effect.onExit(
                restore(instance.breaker.run(call, attempt)),
                () => Effect.sync(() => release(instance))
              )
            })
          )
        }
      }
    }
  })

  const views = Effect.forEach(instances, (instance) =>
    Effect.map(instance.breaker.snapshot, (breaker): InstanceView => ({
      url: instance.url,
      connected: instance.member.connected(),
      outstanding: instance.outstanding,
      draining: instance.draining,
      breaker
    })))

  return {
    target,
    add,
    remove,
    has: (url) => byUrl.get(url)?.draining === false,
    members: () => instances.filter((i) => !i.draining).map((i) => ({ url: i.url, connected: i.member.connected() })),
    setProblem: (p) => {
      problem = p
    },
    pick,
    transport,
    views
  }
}
