/**
 * What carries messages from a publisher's outbox to its subscribers: the seam between the relay
 * (Relay.ts), which reads outboxes, and whatever delivers. Today one implementation,
 * `InProcessBroker.ts`, which delivers to subscribers hosted in the same process over their own
 * databases; a RabbitMQ broker (a topic exchange, a queue per subscribing module, publisher
 * confirms) is the other this seam is shaped for.
 */
import { Data, type Effect } from "effect"

/** One event as it travels: what the publisher's outbox row holds. */
export interface Message {
  /** Its id (a UUID), the same in every delivery to every subscriber: the inbox's key. */
  readonly id: string
  readonly publisher: string
  readonly event: string
  readonly aggregate: string
  /** Its place in the publisher's outbox (a bigint, as text): orders the events of one aggregate. */
  readonly seq: string
  /** The payload as its event's Schema encodes it. */
  readonly payload: unknown
  readonly publishedAt: Date
  /**
   * Its number among the events of its aggregate (1, 2, ...), taken in the publishing
   * transaction; absent on a message published before the numbers existed.
   */
  readonly aggregateSeq?: number | undefined
  /**
   * The `aggregateSeq` of the latest earlier event of its aggregate, by event name: from it each
   * subscriber finds the event it must have applied first (the latest among those it subscribes
   * to), whichever events of the publisher it subscribes to.
   */
  readonly preceding?: Readonly<Record<string, number>> | undefined
  /** The W3C `traceparent` of the span that published it: its handler's span continues that trace. */
  readonly traceparent?: string | undefined
}

/** The broker could not take or confirm a message (unreachable, closed, refused). */
export class BrokerUnavailable extends Data.TaggedError("BrokerUnavailable")<{ readonly reason: string }> {}

export interface Broker {
  /**
   * Takes a batch of one publisher's messages, in outbox order, and succeeds only once each is
   * durable for every subscriber of its event (a publisher confirm): the relay marks them
   * published only then. It may have taken some of them when it fails: the relay hands them
   * again, and the subscribers' inboxes drop what they already applied.
   */
  readonly publish: (messages: ReadonlyArray<Message>) => Effect.Effect<void, BrokerUnavailable>
}
