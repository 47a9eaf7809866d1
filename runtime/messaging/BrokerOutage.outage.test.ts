/**
 * Events through RabbitMQ while the broker itself stops and starts again (`rabbitmqctl stop_app`,
 * `start_app`) under a stream of events, on PostgreSQL and on embedded PGlite: none lost, none
 * applied twice, each aggregate's in the order published. A suite of the "outages" project (vitest.config.ts): it runs after every other
 * suite, alone, since it stops the broker they share.
 */
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
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
const rabbitmqctl = (command: "stop_app" | "start_app") =>
  Effect.sync(() => execFileSync("rabbitmqctl", [command], { stdio: "ignore", timeout: 60_000 }))

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
          const applied = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length >= EACH ? rows : undefined)), `${aggregate}'s events`, 90_000))
          // Every one once, in the order published: across the outage RabbitMQ may hand an
          // aggregate's events back out of order, and the subscriber waits for the earlier ones.
          expect(applied.map((r) => r.n)).toEqual(Array.from({ length: EACH }, (_, i) => i + 1))
        }
      }, 180_000)

    }
  )
})
