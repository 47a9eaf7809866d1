/**
 * Events through RabbitMQ (`AMQP_URL` set), on PostgreSQL and on embedded PGlite: the toy
 * modules (runtime/testing/MessagingToy.ts) hosted as any module is, their events relayed to the
 * broker and taken from the subscriber's own queue there, applied once each, in order per
 * aggregate, a failing handler retried and then dead-lettered with its error; and a subscription
 * with its publisher in another process is accepted once a broker carries events.
 */
import { Effect } from "effect"
import { Connection } from "rabbitmq-client"
import { afterAll, describe, expect, it } from "vitest"
import * as Toy from "../testing/MessagingToy.ts"
import { appliedOf, unique, waitFor } from "../testing/MessagingToy.ts"
import * as Services from "../testing/Services.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as Messaging from "./Messaging.ts"
import * as RabbitBroker from "./RabbitBroker.ts"

const rabbit = await Services.findRabbit()
/** A virtual host of this file's own: no other suite's hosts consume its queues. */
const broker = rabbit.ok ? await Services.isolatedRabbit(rabbit.value) : undefined
const queue = RabbitBroker.queueOf("toysub", "toypub", "ToyHappened")

afterAll(async () => {
  await broker?.drop()
})

describe("where events can be delivered, with a message broker", () => {
  it("accepts a subscription whose publisher runs in another process", () => {
    const modules = [Toy.ToyPubModule, Toy.ToySubModule]
    for (const hosted of [["toypub"], ["toysub"]]) expect(Messaging.problems(modules, hosted, { broker: true })).toEqual([])
  })
})

describe.skipIf(!rabbit.ok)("events through RabbitMQ", () => {
  TestHost.describeOnDatabases(
    "events through RabbitMQ",
    (database) =>
      TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], database, [], {
        AMQP_URL: broker?.url ?? "",
        TESSERA_EVENTS_RETRY_BACKOFF: "100 millis",
        TESSERA_EVENTS_MAX_DELIVERIES: "3",
        TESSERA_EVENTS_POLL_INTERVAL: "3 seconds"
      }),
    (run) => {
      it("relays to the broker and applies from the subscriber's queue there, once each, in order per aggregate", async () => {
        const aggregate = unique("through")
        for (let n = 1; n <= 5; n++) await run(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate, n, failTimes: 0, rollback: false })))
        const applied = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length >= 5 ? rows : undefined)), "5 events"))
        expect(applied.map((r) => r.n)).toEqual([1, 2, 3, 4, 5])
        // The queue the subscriber consumes is RabbitMQ's.
        const admin = new Connection(broker!.url)
        try {
          const declared = await admin.queueDeclare({ queue, passive: true })
          expect(declared.consumerCount).toBeGreaterThanOrEqual(1)
        } finally {
          await admin.close()
        }
        // A relay handing everything again changes nothing.
        await run(Effect.flatMap(Toy.PubClient, (c) => c.forgetPublished()))
        await run(waitFor(Effect.map(Effect.flatMap(Toy.PubClient, (c) => c.outbox()), (rows) => rows.every((r) => r.published) ? true : undefined), "relayed again"))
        await Effect.runPromise(Effect.sleep("500 millis"))
        await run(waitFor(Effect.map(Effect.flatMap(Toy.SubClient, (c) => c.queued()), (n) => (n === 0 ? true : undefined)), "the queue drained"))
        expect(await run(appliedOf(aggregate))).toHaveLength(5)
      })

      it("retries a failing handler and dead-letters it with its error after the limit, the others going on", async () => {
        const poisoned = unique("poison")
        const fine = unique("fine")
        await run(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate: poisoned, n: 1, failTimes: 99, rollback: false })))
        await run(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate: fine, n: 1, failTimes: 0, rollback: false })))
        await run(waitFor(Effect.map(appliedOf(fine), (rows) => (rows.length > 0 ? rows : undefined)), "the fine event"))
        const dead = await run(waitFor(Effect.map(Effect.flatMap(Toy.SubClient, (c) => c.deadLetters()), (rows) =>
          rows.find((r) => r.aggregate === poisoned)), "the dead letter"))
        expect(dead).toMatchObject({ attempts: 3 })
        expect(dead.error).toMatch(/toy handler fails/i)
        expect(await run(appliedOf(poisoned))).toEqual([])
      })
    }
  )
})
