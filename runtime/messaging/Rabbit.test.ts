/**
 * The RabbitMQ adapter against a real broker: confirmed publishes with many in flight, manual
 * acks, the delivery count a failed message returns with, the broker's delivery limit moving a
 * message to its queue's dead letters without holding up the others, and the status of a
 * connection that cannot reach its broker. Each test declares queues of its own and deletes them.
 */
import { Duration, Effect, Exit, Redacted, Scope } from "effect"
import { randomUUID } from "node:crypto"
import { Connection } from "rabbitmq-client"
import { afterAll, describe, expect, it } from "vitest"
import * as Services from "../testing/Services.ts"
import * as Rabbit from "./Rabbit.ts"

const found = await Services.findRabbit()
const skipped = found.ok ? undefined : Services.unavailable("RabbitMQ", found.reason)
const url = found.ok ? found.value : ""

/** Queues to delete after the suite, through a connection of the test's own. */
const declared: Array<string> = []
afterAll(async () => {
  if (!found.ok) return
  const admin = new Connection(url)
  for (const queue of declared) {
    await admin.queueDelete({ queue }).catch(() => undefined)
    await admin.queueDelete({ queue: Rabbit.deadQueueOf(queue) }).catch(() => undefined)
  }
  await admin.close()
})

/** Runs `f` with a broker connection, closed after. */
const withRabbit = <A>(f: (rabbit: Rabbit.Rabbit, scope: Scope.Scope) => Effect.Effect<A, unknown, Scope.Scope>, target = url) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const rabbit = yield* Rabbit.make(Redacted.make(target), { connectionName: "tessera-test" })
    return yield* f(rabbit, yield* Effect.scope)
  })))

/** A queue name and routing key of the test's own. */
const fresh = (what: string) => {
  const id = randomUUID().slice(0, 8)
  const queue = `test.${what}.${id}`
  declared.push(queue)
  return { queue, routingKey: `test.${what}-${id}` }
}

/** Whether `predicate` came true within `timeout`. */
const waitFor = (predicate: () => boolean, timeout: Duration.DurationInput) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(timeout)
    while (!predicate() && Date.now() < deadline) yield* Effect.sleep("20 millis")
    return predicate()
  })

describe.skipIf(skipped !== undefined)("RabbitMQ adapter", () => {
  it("delivers every confirmed message once to a subscription, many in flight", async () => {
    const { queue, routingKey } = fresh("all")
    const seen = new Map<string, number>()
    const result = await withRabbit((rabbit) =>
      Effect.gen(function*() {
        yield* rabbit.consume({ queue, routingKeys: [routingKey], concurrency: 16 }, (message) =>
          Effect.sync(() => seen.set(message.messageId, (seen.get(message.messageId) ?? 0) + 1)))
        expect((yield* Rabbit.awaitReady(rabbit, "10 seconds")).ready).toBe(true)
        // The queue exists once the consumer is up; publishing before could reach no queue.
        yield* Effect.sleep("300 millis")
        const messages = Array.from({ length: 500 }, (_, i) => ({ routingKey, messageId: `m-${i}`, body: { n: i }, headers: { traceparent: `t-${i}` } }))
        yield* rabbit.publish(messages)
        return yield* waitFor(() => seen.size === 500, "20 seconds")
      })
    )
    expect(result).toBe(true)
    expect([...seen.values()].every((n) => n === 1)).toBe(true)
  })

  it("carries the body, headers and id, and counts deliveries of a message that failed", async () => {
    const { queue, routingKey } = fresh("retry")
    const counts: Array<number> = []
    let received: Rabbit.Incoming | undefined
    await withRabbit((rabbit) =>
      Effect.gen(function*() {
        yield* rabbit.consume({ queue, routingKeys: [routingKey], concurrency: 1, backoff: () => "10 millis" }, (message) =>
          Effect.suspend(() => {
            counts.push(message.deliveryCount)
            received = message
            return counts.length < 3 ? Effect.fail("not yet") : Effect.void
          }))
        yield* Rabbit.awaitReady(rabbit, "10 seconds")
        yield* Effect.sleep("300 millis")
        yield* rabbit.publish([{ routingKey, messageId: "only", body: { orderId: "o-1", cents: 1999 }, headers: { traceparent: "00-abc-def-01" } }])
        yield* waitFor(() => counts.length >= 3, "10 seconds")
        yield* Effect.sleep("200 millis")
      })
    )
    expect(counts).toEqual([0, 1, 2])
    expect(received?.messageId).toBe("only")
    expect(received?.body).toEqual({ orderId: "o-1", cents: 1999 })
    expect(received?.headers.traceparent).toBe("00-abc-def-01")
    expect(received?.routingKey).toBe(routingKey)
  })

  it("moves a message that always fails to its dead letters at the broker's limit, without holding up the others", async () => {
    const { queue, routingKey } = fresh("poison")
    const good = new Set<string>()
    let poisonTries = 0
    await withRabbit((rabbit) =>
      Effect.gen(function*() {
        yield* rabbit.consume({ queue, routingKeys: [routingKey], concurrency: 4, backoff: () => "1 millis" }, (message) =>
          message.messageId === "poison"
            ? Effect.sync(() => poisonTries++).pipe(Effect.zipRight(Effect.die("poison")))
            : Effect.sync(() => good.add(message.messageId)))
        yield* Rabbit.awaitReady(rabbit, "10 seconds")
        yield* Effect.sleep("300 millis")
        yield* rabbit.publish([
          { routingKey, messageId: "poison", body: {} },
          ...Array.from({ length: 50 }, (_, i) => ({ routingKey, messageId: `good-${i}`, body: {} }))
        ])
        yield* waitFor(() => good.size === 50 && poisonTries > Rabbit.BROKER_DELIVERY_LIMIT, "30 seconds")
        yield* Effect.sleep("300 millis")
      })
    )
    expect(good.size).toBe(50)
    // Delivered once, then again up to the limit: no more.
    expect(poisonTries).toBe(Rabbit.BROKER_DELIVERY_LIMIT + 1)
    const admin = new Connection(url)
    try {
      const dead = await admin.basicGet({ queue: Rabbit.deadQueueOf(queue), noAck: true })
      expect(dead?.messageId).toBe("poison")
    } finally {
      await admin.close()
    }
  })

  it("is not ready, and says why, while its broker cannot be reached; publishing fails typed", async () => {
    const { status, exit } = await withRabbit((rabbit) =>
      Effect.gen(function*() {
        yield* Effect.sleep("300 millis")
        const status = yield* rabbit.status
        const exit = yield* Effect.exit(rabbit.publish([{ routingKey: "nowhere", messageId: "x", body: {} }]).pipe(Effect.timeout("3 seconds")))
        return { status, exit }
      }), "amqp://guest:guest@127.0.0.1:1")
    expect(status.ready).toBe(false)
    expect(status.reason).toMatch(/RabbitMQ unreachable/)
    expect(Exit.isFailure(exit)).toBe(true)
  })
})
