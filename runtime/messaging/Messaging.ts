/**
 * Events in a process (ARCHITECTURE.md, "Messages"): for each hosted module that publishes, its
 * relay (Relay.ts) over the in-process broker (InProcessBroker.ts); for each hosted module that
 * subscribes, its consumer; for each, the purge of what its retention no longer needs. Host.ts
 * starts them once every hosted module is up, and stops them before any.
 *
 * With `AMQP_URL` set, the relays publish to RabbitMQ and each hosted subscriber consumes its
 * queues there (RabbitBroker.ts), wherever the publisher runs. Without it, the in-process broker
 * reaches only subscribers in this process: a subscription whose publisher runs here and whose
 * subscriber does not (or the reverse) is refused at start (`problems`), since its events would
 * never arrive.
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, Duration, Effect, Fiber, Option, Queue, type Redacted, Schedule, Stream } from "effect"
import type { Module } from "../Module.ts"
import * as Settings from "../Settings.ts"
import * as Event from "./Event.ts"
import * as InProcessBroker from "./InProcessBroker.ts"
import { channelOf, Outbox, type Publisher } from "./Outbox.ts"
import * as Rabbit from "./Rabbit.ts"
import * as RabbitBroker from "./RabbitBroker.ts"
import * as Relay from "./Relay.ts"

/** Whether `module` publishes or subscribes to events (and so has the messaging tables). */
export const usesEvents = (module: Module.Any) => module.publishes.length > 0 || module.subscribes.length > 0

/**
 * What keeps this build's subscriptions from working in a process hosting `hosted`: an event a
 * module subscribes to that no module of the build declares, and a subscription with one end in
 * this process and the other elsewhere.
 */
export const problems = (
  modules: ReadonlyArray<Module.Any>,
  hosted: ReadonlyArray<string>,
  options: {
    /** Whether a message broker (RabbitMQ) carries events between processes. */
    readonly broker?: boolean
  } = {}
): ReadonlyArray<string> => {
  const byName = new Map(modules.map((m) => [m.name, m] as const))
  const found: Array<string> = []
  for (const subscriber of modules) {
    for (const { event } of subscriber.subscribes) {
      const publisher = byName.get(event.publisher)
      if (publisher === undefined) {
        found.push(`${subscriber.name} subscribes to ${event.publisher}'s ${event.name}, but this build has no module ${event.publisher}`)
      } else if (!publisher.publishes.some((e) => e.name === event.name)) {
        found.push(`${subscriber.name} subscribes to ${event.publisher}'s ${event.name}, which ${event.publisher} does not declare it publishes`)
      } else if (options.broker !== true && hosted.includes(subscriber.name) !== hosted.includes(publisher.name)) {
        const [here, there] = hosted.includes(subscriber.name) ? [subscriber.name, publisher.name] : [publisher.name, subscriber.name]
        found.push(
          `${subscriber.name} subscribes to ${publisher.name}'s ${event.name}, and ${here} runs in this process but ${there} does not: ` +
            `without a message broker events go only within a process: set AMQP_URL, or host ${publisher.name} and ${subscriber.name} together`
        )
      }
    }
  }
  return found
}

/** A wake-up signal: `wake` never waits; `wait` returns at the next wake-up (or one already given) or after `atMost`. */
export interface Signal {
  readonly wake: () => void
  readonly wait: (atMost: Duration.Duration) => Effect.Effect<void>
}

export const signal = (): Signal => {
  const queue = Effect.runSync(Queue.sliding<void>(1))
  return {
    wake: () => void queue.unsafeOffer(undefined),
    wait: (atMost) => Effect.asVoid(Effect.raceFirst(Queue.take(queue), Effect.sleep(atMost)))
  }
}

/** The signals of this process's relays and consumers, by module; made before any module starts. */
export class Signals {
  private readonly relays = new Map<string, Signal>()
  private readonly consumers = new Map<string, Signal>()
  relay(module: string): Signal {
    let found = this.relays.get(module)
    if (found === undefined) this.relays.set(module, found = signal())
    return found
  }
  consumer(module: string): Signal {
    let found = this.consumers.get(module)
    if (found === undefined) this.consumers.set(module, found = signal())
    return found
  }
}

/**
 * The message broker of this process once messaging has started, for its readiness: a process
 * hosting a module that publishes or subscribes is not ready while RabbitMQ is out of reach.
 */
export class BrokerLink {
  status: Effect.Effect<Rabbit.Status> = Effect.succeed({ ready: true })
}

/**
 * Messages a subscriber's RabbitMQ queue sends ahead, unacknowledged: the most one intake
 * transaction of the queue takes into its queue table (RabbitBroker.consume).
 */
const RABBIT_PREFETCH = 256

/** A hosted module as messaging needs it. */
export interface HostedModule {
  readonly module: Module.Any
  readonly sql: SqlClient.SqlClient
  /** Its outbox, when it publishes. */
  readonly outbox: Publisher | undefined
  /**
   * Whether it is on the embedded database, which one process owns: a relay lease found there
   * is a dead process's, and is taken over at once.
   */
  readonly embedded: boolean
  /** Notifications of its database (PostgreSQL), or `undefined` (embedded: this process's wake-ups suffice). */
  readonly listen: ((channel: string) => Stream.Stream<string, SqlError.SqlError>) | undefined
}

/**
 * Wakes `signal` at every notification of `channel` for as long as the scope lives; a listen that
 * fails (its connection lost) is logged and opened again after `pause` (polling goes on meanwhile).
 *
 * The scope's end interrupts it without waiting for it to end: ending a listen runs `UNLISTEN` on
 * its connection with no timeout (@effect/sql-pg 0.53), and a connection cut off without a word
 * (a network partition: seen with a container disconnected and connected again) never answers,
 * which kept a process from exiting on SIGTERM until it was killed. Its connection is closed, with
 * a timeout, by the pool's own end.
 */
const wakeOnNotify = (
  listen: (channel: string) => Stream.Stream<string, SqlError.SqlError>,
  channel: string,
  signal: Signal,
  pause: Duration.Duration
) =>
  Effect.acquireRelease(
    // Interruptible: a fiber forked here would inherit the acquisition's uninterruptibility.
    Effect.forkDaemon(Effect.interruptible(
      listen(channel).pipe(
        Stream.runForEach(() => Effect.sync(signal.wake)),
        Effect.catchAllCause((cause) => Effect.logWarning(`listening on ${channel} failed; listening again`, cause)),
        Effect.zipRight(Effect.sleep(pause)),
        Effect.forever
      )
    )),
    Fiber.interruptFork
  )

/** Deletes what `module`'s retention no longer needs: published outbox rows, inbox records. */
export const purge = (sql: SqlClient.SqlClient, retention: Duration.Duration) =>
  Effect.gen(function*() {
    const ms = Duration.toMillis(retention)
    yield* sql`DELETE FROM outbox WHERE published_at < clock_timestamp() - ${ms} * interval '1 millisecond'`
    yield* sql`DELETE FROM inbox WHERE applied_at < clock_timestamp() - ${ms} * interval '1 millisecond'`
  })

/** How often the purge runs: every ten minutes, or at the retention when shorter. */
const PURGE_EVERY = Duration.minutes(10)

/**
 * Starts the relays, consumers and purges of `hosted` in the current scope (each a fiber of its
 * own, interrupted when the scope closes). `instance` names this process to the relay lease.
 */
export const start = (
  hosted: ReadonlyArray<HostedModule>,
  signals: Signals,
  instance: string,
  options: {
    /** RabbitMQ (`AMQP_URL`), if events go between processes. */
    readonly amqpUrl: Option.Option<Redacted.Redacted<string>>
    readonly link: BrokerLink
  }
) =>
  Effect.gen(function*() {
    const maxDeliveries = yield* Settings.eventsMaxDeliveries.config
    const retryBackoff = yield* Settings.eventsRetryBackoff.config
    const pollInterval = yield* Settings.eventsPollInterval.config
    const retention = yield* Settings.eventsRetention.config
    const orderHold = yield* Settings.eventsOrderHold.config

    const subscribers = hosted.filter((h) => h.module.subscribes.length > 0).map((h): InProcessBroker.Subscriber => ({
      module: h.module.name,
      sql: h.sql,
      subscriptions: new Map(h.module.subscribes.map((s) => [Event.keyOf(s.event), s] as const)),
      context: h.outbox === undefined
        ? Context.make(SqlClient.SqlClient, h.sql)
        : Context.make(SqlClient.SqlClient, h.sql).pipe(Context.add(Outbox, h.outbox)),
      wake: signals.consumer(h.module.name).wake,
      notify: h.listen !== undefined
    }))
    const rabbit = Option.isSome(options.amqpUrl)
      ? yield* Rabbit.make(options.amqpUrl.value, { connectionName: `tessera ${hosted.map((h) => h.module.name).join(",")}` })
      : undefined
    if (rabbit !== undefined) options.link.status = rabbit.status
    const broker = rabbit === undefined ? InProcessBroker.make(subscribers) : RabbitBroker.make(rabbit)

    for (const h of hosted.filter((h) => h.module.publishes.length > 0)) {
      const { wait } = signals.relay(h.module.name)
      if (h.embedded) yield* Relay.release(h.sql)
      if (h.listen) yield* wakeOnNotify(h.listen, channelOf(h.module.name), signals.relay(h.module.name), pollInterval)
      yield* Effect.forkScoped(Relay.run({ module: h.module.name, sql: h.sql, broker, instance, wait: wait(pollInterval) }))
    }
    for (const subscriber of subscribers) {
      if (rabbit !== undefined) yield* RabbitBroker.consume(rabbit, subscriber, { prefetch: RABBIT_PREFETCH })
      const { wait } = signals.consumer(subscriber.module)
      const listen = hosted.find((h) => h.module.name === subscriber.module)?.listen
      if (listen) yield* wakeOnNotify(listen, InProcessBroker.channelOf(subscriber.module), signals.consumer(subscriber.module), pollInterval)
      yield* Effect.forkScoped(InProcessBroker.consume(subscriber, { maxDeliveries, retryBackoff, orderHold, pollInterval, wait }))
    }
    for (const h of hosted.filter((h) => usesEvents(h.module))) {
      yield* Effect.forkScoped(
        purge(h.sql, retention).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning(`${h.module.name}: purging old events failed`, cause)),
          Effect.repeat(Schedule.spaced(Duration.min(PURGE_EVERY, retention)))
        )
      )
    }
  })
