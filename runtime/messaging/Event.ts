/**
 * Events between modules: what a module publishes (`make`, in its `<Name>Events.ts`, exported
 * from its index.ts) and what another module does when one arrives (`on`, listed in its
 * declaration's `subscribes`). A subscriber imports the publisher's event from the publisher's
 * index.ts, so its handler is typed by the publisher's Schema.
 *
 * Versioning: a subscriber decodes a payload with the Schema it was built with, and fields it
 * does not know are dropped. So a publisher may add optional fields to an event; any other
 * change (a field removed, renamed, retyped or made required) is a new event with a new name,
 * published beside the old one for as long as a subscriber may read the old one.
 */
import type { Effect, Schema } from "effect"

/** An event `Publisher` publishes under `Name`, with its payload's Schema and the aggregate it is about. */
export interface Event<Publisher extends string, Name extends string, A, I> {
  readonly publisher: Publisher
  readonly name: Name
  readonly payload: Schema.Schema<A, I>
  /**
   * The aggregate (an entity of the publisher: a product, an order) an event is about. Each
   * subscriber gets the events of one aggregate in the order their transactions published them.
   */
  readonly aggregate: (payload: A) => string
}

export declare namespace Event {
  export type Any = Event<string, string, any, any>
  /** The payload of an event, as its handler gets it. */
  export type Payload<E> = E extends Event<string, string, infer A, any> ? A : never
}

/** Declares an event of the module `publisher`. */
export const make = <const Publisher extends string, const Name extends string, A, I>(
  event: Event<Publisher, Name, A, I>
): Event<Publisher, Name, A, I> => event

/** `publisher/name`: an event's name in the whole build. */
export const keyOf = (event: { readonly publisher: string; readonly name: string }) => `${event.publisher}/${event.name}`

/** One delivery of an event to a subscriber. */
export interface Delivery {
  /** The message's id: the same in every delivery of it, to every subscriber. */
  readonly messageId: string
  /** When its publisher's transaction wrote it. */
  readonly publishedAt: Date
  /** 1 for the first delivery to this subscriber, 2 for the first retry, ... */
  readonly attempt: number
}

/**
 * What a subscriber does with an event, in its own transaction (with its inbox record): changes
 * to its own data only (calls to other modules are refused inside a transaction), and perhaps
 * events of its own. A failure (typed or defect) is retried; after
 * `TESSERA_EVENTS_MAX_DELIVERIES` failed deliveries the message is dead-lettered with its error.
 */
export interface Subscription<E extends Event.Any, R> {
  readonly event: E
  readonly handle: (payload: Event.Payload<E>, delivery: Delivery) => Effect.Effect<void, unknown, R>
}

export declare namespace Subscription {
  export type Any = Subscription<Event.Any, any>
}

/** Subscribes to `event` (imported from its publisher's index.ts). */
export const on = <E extends Event.Any, R>(
  event: E,
  handle: (payload: Event.Payload<E>, delivery: Delivery) => Effect.Effect<void, unknown, R>
): Subscription<E, R> => ({ event, handle })
