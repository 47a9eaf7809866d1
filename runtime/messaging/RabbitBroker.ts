/**
 * The broker between processes (`AMQP_URL` set): the relay of a publishing module hands its
 * outbox rows to RabbitMQ (Rabbit.ts: one topic exchange, routing key `<publisher>.<event>`,
 * publisher confirms), and each subscribing module consumes one durable queue per event it
 * subscribes to (`<subscriber>.<publisher>.<event>`), wherever each of them runs.
 *
 * A message taken from a queue is not applied there: it is written into the subscriber's own
 * queue table (`event_deliveries`, as the in-process broker does, InProcessBroker.ts), together
 * with the others handed over meanwhile, and only then acknowledged; the subscriber's consumer applies it from there with its inbox record, in
 * order per aggregate, retried with backoff and dead-lettered with its error after
 * `TESSERA_EVENTS_MAX_DELIVERIES` (visible and replayable through the admin routes). So both
 * brokers give one set of guarantees, and the broker's own redelivery and delivery limit only
 * cover the step from queue to table: a message whose write keeps failing (the subscriber's
 * database down) returns to its queue after a backoff, and after Rabbit.BROKER_DELIVERY_LIMIT
 * deliveries lands in the queue's `.dead` queue, where an operator finds it.
 *
 * What orders and traces a message travels in its headers: `tessera-aggregate-seq` and
 * `tessera-preceding` (its number among its aggregate's events, and the latest earlier number of
 * each event name, as JSON), by which the subscriber applies an aggregate's events in order
 * whatever order its queues hand them over in; and `traceparent` (W3C), the span that published
 * it, which its handler's span continues.
 */
import { Chunk, Deferred, Effect, Queue, Schema, type Scope } from "effect"
import type { Broker, BrokerUnavailable, Message } from "./Broker.ts"
import * as Event from "./Event.ts"
import * as InProcessBroker from "./InProcessBroker.ts"
import type * as Rabbit from "./Rabbit.ts"

/** The routing key of `publisher`'s `event`. */
export const routingKeyOf = (publisher: string, event: string) => `${publisher}.${event}`

/** The queue `subscriber` consumes `publisher`'s `event` from. */
export const queueOf = (subscriber: string, publisher: string, event: string) => `${subscriber}.${publisher}.${event}`

/** A message's body on the wire: the outbox row. */
const Body = Schema.Struct({
  id: Schema.String,
  publisher: Schema.String,
  event: Schema.String,
  aggregate: Schema.String,
  seq: Schema.String,
  payload: Schema.Unknown,
  publishedAt: Schema.DateFromString
})
const encodeBody = Schema.encodeSync(Body)
const decodeBody = Schema.decodeUnknown(Body)

const AGGREGATE_SEQ = "tessera-aggregate-seq"
const PRECEDING = "tessera-preceding"
const TRACEPARENT = "traceparent"

/** A message's headers on the wire: what orders and traces it. */
export const headersOf = (message: Message): Record<string, string> => {
  const headers: Record<string, string> = {}
  if (message.aggregateSeq !== undefined) headers[AGGREGATE_SEQ] = String(message.aggregateSeq)
  if (message.preceding !== undefined) headers[PRECEDING] = JSON.stringify(message.preceding)
  if (message.traceparent !== undefined) headers[TRACEPARENT] = message.traceparent
  return headers
}

const Sequence = Schema.compose(Schema.NumberFromString, Schema.Int.pipe(Schema.positive()))
const Headers = Schema.Struct({
  [AGGREGATE_SEQ]: Schema.optional(Sequence),
  [PRECEDING]: Schema.optional(Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Int.pipe(Schema.positive()) }))),
  [TRACEPARENT]: Schema.optional(Schema.String)
})
const decodeHeaders = Schema.decodeUnknown(Headers)

/** The message a delivery carries: its body (the outbox row) with what its headers add. */
export const messageOf = (incoming: Pick<Rabbit.Incoming, "body" | "headers">) =>
  Effect.zipWith(decodeBody(incoming.body), decodeHeaders(incoming.headers), (body, headers): Message => ({
    ...body,
    aggregateSeq: headers[AGGREGATE_SEQ],
    preceding: headers[PRECEDING],
    traceparent: headers[TRACEPARENT]
  }))

/** Publishes through `rabbit`: a batch succeeds once the broker confirmed every message. */
export const make = (rabbit: Rabbit.Rabbit): Broker => ({
  publish: (messages: ReadonlyArray<Message>) =>
    rabbit.publish(messages.map((message) => ({
      routingKey: routingKeyOf(message.publisher, message.event),
      messageId: message.id,
      body: encodeBody(message),
      headers: headersOf(message)
    })))
})

/** The most messages written into the subscriber's queue table in one transaction. */
const INTAKE_BATCH = 500

/**
 * Consumes, for the life of the scope, every queue of `subscriber`'s subscriptions: the messages
 * handed over meanwhile (up to the prefetch of each queue) written together into its
 * `event_deliveries` in one transaction (its consumer woken once), and each acknowledged only
 * once that transaction committed. A message whose body or headers are not a message fails
 * alone; a write that fails returns every message of its batch to its queue (after a backoff).
 */
export const consume = (
  rabbit: Rabbit.Rabbit,
  subscriber: InProcessBroker.Subscriber,
  options: { readonly prefetch: number }
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const enqueue = InProcessBroker.make([subscriber])
    const pending = yield* Queue.unbounded<readonly [Message, Deferred.Deferred<void, BrokerUnavailable>]>()
    // The writer, forked before the consumers: their finalizers (closing them, which waits for
    // the messages they hold) run before it is interrupted.
    yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
      const batch = Chunk.toReadonlyArray(yield* Queue.takeBetween(pending, 1, INTAKE_BATCH))
      const written = yield* Effect.exit(enqueue.publish(batch.map(([message]) => message)))
      yield* Effect.forEach(batch, ([, done]) => Deferred.done(done, written), { discard: true })
    })))
    yield* Effect.forEach(subscriber.subscriptions.values(), (subscription) => {
      const { publisher, name } = subscription.event
      return rabbit.consume(
        {
          queue: queueOf(subscriber.module, publisher, name),
          routingKeys: [routingKeyOf(publisher, name)],
          // Every message the broker sends ahead is taken in at once: the queue table and the
          // numbers a message carries (after_seq) order an aggregate's events, not the intake.
          concurrency: options.prefetch,
          prefetch: options.prefetch
        },
        (incoming) =>
          messageOf(incoming).pipe(
            Effect.filterOrDieMessage(
              (message) => Event.keyOf({ publisher: message.publisher, name: message.event }) === Event.keyOf(subscription.event),
              `a message on ${queueOf(subscriber.module, publisher, name)} is not ${publisher}'s ${name}`
            ),
            Effect.flatMap((message) =>
              Effect.flatMap(Deferred.make<void, BrokerUnavailable>(), (done) =>
                Effect.zipRight(Queue.offer(pending, [message, done] as const), Deferred.await(done)))
            )
          )
      )
    }, { discard: true })
  })
