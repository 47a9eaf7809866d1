/**
 * The order of one aggregate's events and the trace of each, in process and through RabbitMQ, on
 * PostgreSQL and on embedded PGlite: messages handed to the subscriber by hand (queued as the
 * in-process broker queues them, or published to its RabbitMQ queue), out of order and more than
 * once, are applied once each in their aggregate's order; a predecessor dead-lettered, or never
 * arriving within `TESSERA_EVENTS_ORDER_HOLD`, holds nothing up for good; and the handler's span
 * is in the trace of the span that published the event.
 */
import { Effect, Redacted } from "effect"
import { Connection } from "rabbitmq-client"
import { afterAll, describe, expect, it } from "vitest"
import * as Toy from "../testing/MessagingToy.ts"
import { appliedOf, unique, waitFor } from "../testing/MessagingToy.ts"
import * as Services from "../testing/Services.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as Rabbit from "./Rabbit.ts"
import * as RabbitBroker from "./RabbitBroker.ts"

const found = await Services.findRabbit()
// A vhost of its own: the toy's queue names are shared with the other RabbitMQ suites.
const vhost = found.ok ? await Services.isolatedRabbit(found.value) : undefined
afterAll(async () => {
  await vhost?.drop()
})

const HOLD_MS = 4_000

/** Hands `messages` to the subscriber, in the order given. */
type Deliver = (messages: ReadonlyArray<Toy.HandMade>) => Effect.Effect<void, unknown, any>

const inProcess: Deliver = (messages) => Effect.flatMap(Toy.SubClient, (c) => c.deliver({ messages }))

/** Publishes `messages` to the toy's exchange by hand, one confirmed after the other. */
const throughRabbit = (url: string): Deliver => (messages) =>
  Effect.scoped(Effect.gen(function*() {
    const rabbit = yield* Rabbit.make(Redacted.make(url), { connectionName: "EventOrder.test by hand" })
    const broker = RabbitBroker.make(rabbit)
    for (const message of messages) yield* broker.publish([Toy.messageOf(message)])
  }))

/** Waits until the subscriber consumes its RabbitMQ queue (a message published before would reach no queue). */
const consumerUp = (url: string) =>
  waitFor(
    Effect.promise(async () => {
      const admin = new Connection(url)
      try {
        const declared = await admin.queueDeclare({ queue: RabbitBroker.queueOf("toysub", "toypub", "ToyHappened"), passive: true })
        return declared.consumerCount > 0 ? true : undefined
      } catch {
        return undefined
      } finally {
        await admin.close()
      }
    }),
    "the subscriber consuming its queue"
  )

/** Event `k` of `aggregate` as its publisher numbers it: the `k`-th, after the `(k-1)`-th. */
const nth = (aggregate: string, ids: ReadonlyArray<string>, k: number, extra: Partial<Toy.HandMade> = {}) =>
  new Toy.HandMade({
    id: ids[k - 1]!,
    seq: k,
    aggregate,
    n: k,
    failTimes: 0,
    aggregateSeq: k,
    preceding: k === 1 ? {} : { ToyHappened: k - 1 },
    ...extra
  })

const ids = (count: number) => Array.from({ length: count }, () => crypto.randomUUID())

const ns = (aggregate: string) => Effect.map(appliedOf(aggregate), (rows) => rows.map((r) => r.n))

const brokers: ReadonlyArray<{ readonly name: string; readonly config: Record<string, string>; readonly deliver: Deliver; readonly url?: string }> = [
  { name: "in process", config: {}, deliver: inProcess },
  ...(vhost === undefined ? [] : [{ name: "through RabbitMQ", config: { AMQP_URL: vhost.url }, deliver: throughRabbit(vhost.url), url: vhost.url }])
]

for (const broker of brokers) {
  TestHost.describeOnDatabases(
    `the order and trace of events ${broker.name}`,
    (database) =>
      TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], database, [], {
        ...broker.config,
        TESSERA_EVENTS_RETRY_BACKOFF: "100 millis",
        TESSERA_EVENTS_MAX_DELIVERIES: "3",
        TESSERA_EVENTS_POLL_INTERVAL: "100 millis",
        TESSERA_EVENTS_ORDER_HOLD: `${HOLD_MS} millis`
      }),
    (run) => {
      const deliver = (...messages: ReadonlyArray<Toy.HandMade>) => run(broker.deliver(messages))

      it("runs the handler in the trace of the span that published the event", async () => {
        if (broker.url !== undefined) await run(consumerUp(broker.url))
        const aggregate = unique("traced")
        const traceId = await run(
          Effect.flatMap(Effect.currentSpan, (span) =>
            Effect.as(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate, n: 1, failTimes: 0, rollback: false })), span.traceId)).pipe(
              Effect.withSpan("test.request")
            )
        )
        const [applied] = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the event"))
        expect(traceId).toMatch(/^[0-9a-f]{32}$/)
        expect(applied!.traceId).toBe(traceId)
        // Another request's event, another trace.
        const other = unique("traced")
        await run(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate: other, n: 1, failTimes: 0, rollback: false })).pipe(
          Effect.withSpan("test.other")
        ))
        const [second] = await run(waitFor(Effect.map(appliedOf(other), (rows) => (rows.length > 0 ? rows : undefined)), "the other event"))
        expect(second!.traceId).toMatch(/^[0-9a-f]{32}$/)
        expect(second!.traceId).not.toBe(traceId)
      })

      it("applies an aggregate's events once each, in their order, whatever order and however often they arrive", async () => {
        if (broker.url !== undefined) await run(consumerUp(broker.url))
        const aggregate = unique("shuffled")
        const id = ids(4)
        const m = (k: number) => nth(aggregate, id, k)
        // The third first, alone: it waits for the second, which waits for the first.
        await deliver(m(3))
        await run(waitFor(Effect.map(Effect.flatMap(Toy.SubClient, (c) => c.queued()), (n) => (n > 0 ? true : undefined)), "the third queued"))
        await run(Effect.sleep("1 second"))
        expect(await run(ns(aggregate))).toEqual([])
        await deliver(m(3), m(1), m(4), m(3), m(2), m(1))
        const applied = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length >= 4 ? rows : undefined)), "four events"))
        expect(applied.map((r) => r.n)).toEqual([1, 2, 3, 4])
        expect(new Set(applied.map((r) => r.messageId)).size).toBe(4)
        // Delivered again once applied: nothing changes.
        await deliver(m(2), m(4))
        await run(waitFor(Effect.map(Effect.flatMap(Toy.SubClient, (c) => c.queued()), (n) => (n === 0 ? true : undefined)), "the queue drained"))
        await run(Effect.sleep("300 millis"))
        expect(await run(ns(aggregate))).toEqual([1, 2, 3, 4])
      })

      it("waits only for the earlier events this subscriber subscribes to", async () => {
        const aggregate = unique("partial")
        const id = ids(3)
        // The publisher's second event of this aggregate is one the toy does not subscribe to.
        const third = nth(aggregate, id, 3, { preceding: { ToyHappened: 1, SomethingElse: 2 } })
        await deliver(third)
        await run(Effect.sleep("800 millis"))
        expect(await run(ns(aggregate))).toEqual([])
        await deliver(nth(aggregate, id, 1))
        const applied = await run(waitFor(Effect.map(ns(aggregate), (rows) => (rows.length >= 2 ? rows : undefined)), "both events"))
        expect(applied).toEqual([1, 3])
      })

      it("lets an aggregate's next event go once the one before it is dead-lettered", async () => {
        const aggregate = unique("dead-before")
        const id = ids(2)
        await deliver(nth(aggregate, id, 2), nth(aggregate, id, 1, { failTimes: 99 }))
        const applied = await run(waitFor(Effect.map(ns(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the second event"))
        expect(applied).toEqual([2])
        const dead = (await run(Effect.flatMap(Toy.SubClient, (c) => c.deadLetters()))).filter((d) => d.aggregate === aggregate)
        expect(dead.map((d) => [d.messageId, d.attempts])).toEqual([[id[0], 3]])
      })

      it("applies an event whose predecessor never arrives once TESSERA_EVENTS_ORDER_HOLD has passed, and the predecessor when it comes late", async () => {
        const aggregate = unique("held")
        const id = ids(3)
        const started = Date.now()
        await deliver(nth(aggregate, id, 2))
        await run(Effect.sleep("1 second"))
        expect(await run(ns(aggregate))).toEqual([])
        await run(waitFor(Effect.map(ns(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the held event", HOLD_MS + 10_000))
        expect(Date.now() - started).toBeGreaterThanOrEqual(HOLD_MS - 200)
        // Late, but not lost; and the aggregate's next event does not wait for it again.
        await deliver(nth(aggregate, id, 1))
        await run(waitFor(Effect.map(ns(aggregate), (rows) => (rows.length >= 2 ? rows : undefined)), "the late event"))
        const third = Date.now()
        await deliver(nth(aggregate, id, 3))
        expect(await run(waitFor(Effect.map(ns(aggregate), (rows) => (rows.length >= 3 ? rows : undefined)), "the third event"))).toEqual([2, 1, 3])
        expect(Date.now() - third).toBeLessThan(HOLD_MS - 500)
      }, 30_000)
    }
  )
}

describe("RabbitBroker's headers", () => {
  it("carry a message's order and trace, and read back as they were sent", async () => {
    const message = {
      ...Toy.messageOf(nth("agg", ids(2), 2)),
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    }
    const headers = RabbitBroker.headersOf(message)
    expect(headers).toEqual({
      "tessera-aggregate-seq": "2",
      "tessera-preceding": JSON.stringify({ ToyHappened: 1 }),
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    })
    const back = await Effect.runPromise(RabbitBroker.messageOf({ body: { ...message, publishedAt: message.publishedAt.toISOString() }, headers }))
    expect(back).toMatchObject({ aggregateSeq: 2, preceding: { ToyHappened: 1 }, traceparent: message.traceparent })
    // A message from a publisher that sent none (published before they existed) waits for nothing.
    const bare = await Effect.runPromise(RabbitBroker.messageOf({ body: { ...message, publishedAt: message.publishedAt.toISOString() }, headers: {} }))
    expect(bare.aggregateSeq).toBeUndefined()
    expect(bare.preceding).toBeUndefined()
  })
})
