/**
 * RabbitMQ, the broker between processes (when `AMQP_URL` is set), on rabbitmq-client: its
 * `Connection` reconnects with backoff by itself and declares a publisher's or consumer's
 * topology again on every new channel, so this file only shapes it for events:
 *
 * - one durable topic exchange (`tessera.events`) that every event is published to, its routing
 *   key `<publisher module>.<event name>`, persistent, with `mandatory` set so that an event no
 *   queue is bound for is noticed (logged) rather than silently dropped;
 * - `publish` sends a batch with every message in flight at once on a confirm channel and
 *   succeeds only once the broker has confirmed each one (a relay marks rows published after
 *   that, never before);
 * - a subscription is one durable quorum queue (`<subscriber>.<publisher>.<event>`), bound to its
 *   routing keys, consumed with manual acks under a prefetch. A handler that fails has its
 *   message returned to the queue after a backoff (the broker counts deliveries: `deliveryCount`),
 *   so that the subscriber above decides, by that count, when a message is dead: it records the
 *   message with its error and acknowledges it. Behind that, the queue's own delivery limit
 *   (BROKER_DELIVERY_LIMIT) moves a message the subscriber never got to judge (its process
 *   died on it each time) to the dead-letter exchange (`tessera.dead`), into `<queue>.dead`.
 *
 * Quorum queues because they count deliveries and enforce a delivery limit; on a single node
 * they replicate nothing, but behave the same.
 */
import { Duration, Effect, Redacted, Runtime, Schedule, type Scope } from "effect"
import { BrokerUnavailable } from "./Broker.ts"
import { type AsyncMessage, Connection, ConsumerStatus } from "rabbitmq-client"

/** The exchange every event is published to. */
export const EXCHANGE = "tessera.events"
/** Where a queue's messages go once the broker's delivery limit is reached. */
export const DEAD_LETTER_EXCHANGE = "tessera.dead"
/**
 * The broker's own delivery limit on every subscription queue: the last resort for a message
 * whose handler never returns (its process dies on it). The subscriber's limit
 * (`TESSERA_EVENTS_MAX_DELIVERIES`) must stay below it to be the one that decides. Fixed,
 * because a queue's arguments cannot change once declared.
 */
export const BROKER_DELIVERY_LIMIT = 50

export { BrokerUnavailable }

export interface Outgoing {
  readonly routingKey: string
  /** The message's id: the subscriber's inbox key, so a redelivery changes nothing. */
  readonly messageId: string
  /** JSON. */
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>>
}

export interface Incoming {
  readonly messageId: string
  readonly routingKey: string
  readonly body: unknown
  readonly headers: Readonly<Record<string, string>>
  /** How many times the broker delivered this message before (0 the first time). */
  readonly deliveryCount: number
}

export interface Subscription {
  /** The queue's name, e.g. `notifications.orders.OrderConfirmed`. */
  readonly queue: string
  readonly routingKeys: ReadonlyArray<string>
  /** Messages handled at once: 1 handles them in the queue's order. */
  readonly concurrency: number
  /** Messages the broker sends ahead of their handling (at least `concurrency`). */
  readonly prefetch?: number
  /** The wait before a failed message returns to the queue, by how many times it was delivered. */
  readonly backoff?: (deliveryCount: number) => Duration.DurationInput
}

export interface Status {
  readonly ready: boolean
  /** Why not, when not ready. */
  readonly reason?: string
}

export interface Rabbit {
  /** Sends every message at once; succeeds when the broker has confirmed them all. */
  readonly publish: (messages: ReadonlyArray<Outgoing>) => Effect.Effect<void, BrokerUnavailable>
  /**
   * Consumes `subscription` for the life of the scope: a message is acknowledged when `handle`
   * succeeds, returned to the queue (after the backoff) when it fails or dies.
   */
  readonly consume: (
    subscription: Subscription,
    handle: (message: Incoming) => Effect.Effect<void, unknown>
  ) => Effect.Effect<void, never, Scope.Scope>
  /** Whether the connection is up, and why not. */
  readonly status: Effect.Effect<Status>
}

const defaultBackoff = (deliveryCount: number) => Duration.millis(Math.min(5_000, 100 * 2 ** deliveryCount))

const headersOf = (message: AsyncMessage): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const [key, value] of Object.entries(message.headers ?? {})) {
    if (typeof value === "string") headers[key] = value
  }
  return headers
}

/** The broker's count of earlier deliveries (quorum queues set `x-delivery-count` on a redelivery). */
const deliveryCountOf = (message: AsyncMessage) => {
  const count = Number((message.headers as Record<string, unknown> | undefined)?.["x-delivery-count"] ?? 0)
  return Number.isFinite(count) ? count : 0
}

/** Where the broker puts the dead letters of `queue`. */
export const deadQueueOf = (queue: string) => `${queue}.dead`

/** The arguments `queue` is declared with: the same on every declaration, as the broker demands. */
export const queueArguments = (queue: string) => ({
  "x-queue-type": "quorum" as const,
  "x-delivery-limit": BROKER_DELIVERY_LIMIT,
  "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
  // Dead letters keep a key of their queue's, so each queue's land in its own `.dead` queue.
  "x-dead-letter-routing-key": queue
})

/** Seconds between the connection's heartbeats. */
const HEARTBEAT_SECONDS = 10

/** How long closing a consumer, the publisher or the connection waits for the broker's answer. */
const CLOSE_WITHIN = Duration.seconds(5)

/**
 * `close`, waiting for the broker's answer at most CLOSE_WITHIN: a connection that stopped
 * answering (cut off without a word) would keep the process from exiting until the heartbeats
 * find it dead. Then the connection is destroyed, which ends every other wait on it at once.
 * Interruptible, so that the timeout cuts it short inside the finalizer that runs it.
 */
const closing = (connection: Connection, close: () => Promise<void>) =>
  Effect.promise(() => close().catch(() => undefined)).pipe(
    Effect.interruptible,
    Effect.timeoutTo({ duration: CLOSE_WITHIN, onSuccess: () => undefined, onTimeout: () => connection.unsafeDestroy() })
  )

/** A connection to `url` for the life of the scope. */
export const make = (url: Redacted.Redacted<string>, options: { readonly connectionName?: string } = {}) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    let lastError: string | undefined
    const connection = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const connection = new Connection({
          url: Redacted.value(url),
          connectionName: options.connectionName ?? "tessera",
          retryLow: 200,
          retryHigh: 5_000,
          // Seconds between heartbeats: a connection cut off without a word (a network partition,
          // a peer's address gone) is found dead after two missed ones, then reconnected, rather
          // than after RabbitMQ's 60.
          heartbeat: HEARTBEAT_SECONDS,
          // A publish waits this long for a connection before it fails (the relay tries again).
          acquireTimeout: 10_000
        })
        connection.on("error", (error) => {
          lastError = error instanceof Error ? error.message : String(error)
        })
        connection.on("connection", () => {
          lastError = undefined
        })
        return connection
      }),
      // A connection that never came up has nothing to flush: it is dropped, not waited for.
      (connection) => connection.ready ? closing(connection, () => connection.close()) : Effect.sync(() => connection.unsafeDestroy())
    )
    const exchanges = [
      { exchange: EXCHANGE, type: "topic", durable: true },
      { exchange: DEAD_LETTER_EXCHANGE, type: "topic", durable: true }
    ]
    const publisher = yield* Effect.acquireRelease(
      Effect.sync(() =>
        connection.createPublisher({
          confirm: true,
          exchanges,
          onReturn: (returned) =>
            Runtime.runFork(runtime)(
              Effect.logWarning(`event ${returned.routingKey} (${returned.messageId}) reached no queue: no module subscribes to it`)
            )
        })
      ),
      (publisher) => closing(connection, () => publisher.close())
    )

    const publish = (messages: ReadonlyArray<Outgoing>) =>
      Effect.tryPromise({
        try: () =>
          Promise.all(messages.map((message) =>
            publisher.send({
              exchange: EXCHANGE,
              routingKey: message.routingKey,
              messageId: message.messageId,
              durable: true,
              mandatory: true,
              contentType: "application/json",
              timestamp: Math.floor(Date.now() / 1000),
              ...(message.headers ? { headers: { ...message.headers } } : {})
            }, message.body as object)
          )),
        catch: (error) => new BrokerUnavailable({ reason: error instanceof Error ? error.message : String(error) })
      }).pipe(Effect.asVoid)

    const consume = (subscription: Subscription, handle: (message: Incoming) => Effect.Effect<void, unknown>) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const backoff = subscription.backoff ?? defaultBackoff
          const dead = deadQueueOf(subscription.queue)
          return connection.createConsumer({
            queue: subscription.queue,
            queueOptions: { durable: true, arguments: queueArguments(subscription.queue) },
            qos: { prefetchCount: Math.max(subscription.concurrency, subscription.prefetch ?? 0) },
            concurrency: subscription.concurrency,
            requeue: true,
            exchanges,
            queueBindings: subscription.routingKeys.map((routingKey) => ({ exchange: EXCHANGE, queue: subscription.queue, routingKey }))
          }, (message) => {
            const incoming: Incoming = {
              messageId: message.messageId ?? "",
              routingKey: message.routingKey,
              body: message.body,
              headers: headersOf(message),
              deliveryCount: deliveryCountOf(message)
            }
            return Runtime.runPromise(runtime)(
              handle(incoming).pipe(
                Effect.as(ConsumerStatus.ACK),
                Effect.catchAllCause((cause) =>
                  Effect.logDebug(`event ${incoming.routingKey} (${incoming.messageId}) failed; it returns to ${subscription.queue}`, cause).pipe(
                    Effect.zipRight(Effect.sleep(backoff(incoming.deliveryCount))),
                    Effect.as(ConsumerStatus.REQUEUE)
                  )
                )
              )
            )
          }).on("error", (error) => {
            lastError = error instanceof Error ? error.message : String(error)
          }).on("ready", () => {
            // On every (re)connection, with the queue: the queue its dead letters land in.
            connection.queueDeclare({ queue: dead, durable: true, arguments: { "x-queue-type": "quorum" } })
              .then(() => connection.queueBind({ queue: dead, exchange: DEAD_LETTER_EXCHANGE, routingKey: subscription.queue }))
              .catch(() => undefined)
          })
        }),
        (consumer) => closing(connection, () => consumer.close())
      ).pipe(Effect.asVoid)

    const status = Effect.sync((): Status =>
      connection.ready ? { ready: true } : { ready: false, reason: `RabbitMQ unreachable: ${lastError ?? "connecting"}` }
    )

    return { publish, consume, status } satisfies Rabbit
  })

/** Waits until the connection is up or `timeout` has passed; the status says which. */
export const awaitReady = (rabbit: Rabbit, timeout: Duration.DurationInput) =>
  rabbit.status.pipe(
    Effect.filterOrFail((status) => status.ready),
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeoutTo({ duration: timeout, onSuccess: Effect.succeed, onTimeout: () => rabbit.status }),
    Effect.flatten
  )
