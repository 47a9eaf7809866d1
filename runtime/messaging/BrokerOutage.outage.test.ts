/**
 * Events through RabbitMQ while the broker itself stops and starts again (`rabbitmqctl stop_app`,
 * `start_app`) under a stream of events, on PostgreSQL and on embedded PGlite: none lost, none
 * applied twice, each aggregate's in the order published. A suite of the "outages" project (vitest.config.ts): it runs after every other
 * suite, alone, since it stops the broker they share.
 */
import { Effect } from "effect"
import { execFile, execFileSync } from "node:child_process"
import { Connection } from "rabbitmq-client"
import { afterAll, describe, expect, it } from "vitest"
import * as Toy from "../testing/MessagingToy.ts"
import { appliedOf, unique, waitFor } from "../testing/MessagingToy.ts"
import * as Services from "../testing/Services.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as Rabbit from "./Rabbit.ts"
import * as RabbitBroker from "./RabbitBroker.ts"

const rabbit = await Services.findRabbit()
const queue = RabbitBroker.queueOf("toysub", "toypub", "ToyHappened")

/** Whether this machine's broker can be stopped and started here (`rabbitmqctl`, as on CI). */
const controllable = (() => {
  try {
    execFileSync("rabbitmqctl", ["--version"], { stdio: "ignore", timeout: 20_000 })
    return true
  } catch {
    return false
  }
})()
// Not execFileSync: blocking the event loop while the broker stops would stall embedded
// PostgreSQL (in this process) too, past its connection timeout.
const rabbitmqctl = (command: "stop_app" | "start_app") =>
  Effect.async<void, Error>((resume) => {
    execFile("rabbitmqctl", [command], { timeout: 60_000 }, (error) => resume(error ? Effect.fail(error) : Effect.void))
  })

const consumerCount = async () => {
  const admin = new Connection((rabbit as { readonly value: string }).value)
  try {
    return (await admin.queueDeclare({ queue, passive: true })).consumerCount
  } catch {
    return 0
  } finally {
    await admin.close()
  }
}

afterAll(async () => {
  if (!rabbit.ok) return
  const admin = new Connection(rabbit.value)
  await admin.queueDelete({ queue }).catch(() => undefined)
  await admin.queueDelete({ queue: Rabbit.deadQueueOf(queue) }).catch(() => undefined)
  await admin.close()
})

describe.skipIf(!rabbit.ok || !controllable)("events while RabbitMQ stops and starts again", () => {
  TestHost.describeOnDatabases(
    "events while RabbitMQ stops and starts again",
    (database) =>
      TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], database, [], {
        AMQP_URL: rabbit.ok ? rabbit.value : "",
        TESSERA_EVENTS_RETRY_BACKOFF: "100 millis",
        TESSERA_EVENTS_POLL_INTERVAL: "1 second"
      }),
    (run) => {
      it("loses nothing and keeps each aggregate's order when RabbitMQ stops and starts again under a stream of events", async () => {
        const aggregates = Array.from({ length: 8 }, () => unique("outage"))
        const EACH = 25
        // The subscriber's queue first: an event published before it exists reaches no queue.
        await run(waitFor(Effect.promise(() => consumerCount().then((n) => (n > 0 ? true : undefined))), "the subscriber's queue"))
        await run(Effect.gen(function*() {
          const pub = yield* Toy.PubClient
          const publish = Effect.forEach(Array.from({ length: EACH }, (_, i) => i + 1), (n) =>
            Effect.zipRight(
              Effect.forEach(aggregates, (aggregate) => pub.happen({ aggregate, n, failTimes: 0, rollback: false }), { discard: true }),
              Effect.sleep("40 millis")
            ), { discard: true })
          const outage = Effect.gen(function*() {
            yield* Effect.sleep("300 millis")
            yield* rabbitmqctl("stop_app")
            yield* Effect.sleep("1500 millis")
            yield* rabbitmqctl("start_app")
          }).pipe(Effect.ensuring(Effect.ignore(rabbitmqctl("start_app"))))
          yield* Effect.all([publish, outage], { concurrency: 2, discard: true })
        }))
        for (const aggregate of aggregates) {
          const applied = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length >= EACH ? rows : undefined)), `${aggregate}'s events`, 90_000).pipe(
            Effect.tapDefect(() =>
              Effect.gen(function*() {
                const state = yield* Effect.flatMap(Toy.SubClient, (c) => c.queueState())
                const applied = yield* appliedOf(aggregate)
                const outbox = yield* Effect.flatMap(Toy.PubClient, (c) => c.outbox())
                console.log(JSON.stringify({
                  aggregate,
                  applied: applied.map((r) => r.n),
                  unpublished: outbox.filter((r) => !r.published).length,
                  state
                }, null, 1))
              }).pipe(Effect.ignore)
            )
          ))
          // Every one once, in the order published: across the outage RabbitMQ may hand an
          // aggregate's events back out of order, and the subscriber waits for the earlier ones.
          expect(applied.map((r) => r.n)).toEqual(Array.from({ length: EACH }, (_, i) => i + 1))
        }
      }, 180_000)

    }
  )
})
