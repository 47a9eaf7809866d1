/**
 * Events between processes through RabbitMQ, with one end in a process of its own (the toys of
 * runtime/testing/MessagingToy.ts served by MessagingToyHost.ts) killed with SIGKILL and started
 * again, the other in the test's process, on one PostgreSQL database and a RabbitMQ virtual host
 * of their own:
 *
 * - a subscriber process down for a while catches up when it returns: its events wait in its
 *   RabbitMQ queue while the publisher goes on, and once back it applies every one once, each
 *   aggregate's in order;
 * - the relay killed between publishing and marking: a publishing process is held (a trigger on
 *   its outbox waits on a lock the test holds) after RabbitMQ confirmed a message and before the
 *   relay marks its row published, and killed there; the instance that takes the relay over
 *   publishes the message again (a queue of the test's own, bound to the event, sees it twice),
 *   and the subscriber applies it once.
 */
import { Deferred, Duration, Effect, Fiber, type Layer, ManagedRuntime } from "effect"
import { Connection } from "rabbitmq-client"
import { describe, expect, it } from "vitest"
import type * as Module from "../Module.ts"
import * as Processes from "../testing/Processes.ts"
import * as Toy from "../testing/MessagingToy.ts"
import { unique } from "../testing/MessagingToy.ts"
import * as Services from "../testing/Services.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as Rabbit from "./Rabbit.ts"
import * as RabbitBroker from "./RabbitBroker.ts"
import * as Relay from "./Relay.ts"

const postgres = await Services.findPostgres()
const rabbit = await Services.findRabbit()

const config = {
  TESSERA_EVENTS_RETRY_BACKOFF: "100 millis",
  TESSERA_EVENTS_POLL_INTERVAL: "1 second"
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 100 ms until it holds; fails naming `what` (and the toy process's output). */
const waitUntil = async (what: string, check: () => Promise<boolean>, timeoutMs = 60_000, output?: () => string) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}${output ? `\n${output()}` : ""}`)
}

interface Deployment {
  readonly databaseUrl: string
  readonly amqpUrl: string
  /** Runs an effect against the modules hosted in the test's process. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, any>) => Promise<A>
  /** The toy process as it is now. */
  readonly toy: () => Processes.Server
  /** SIGKILL, and waits for the exit. */
  readonly kill: () => Promise<void>
  /** Starts the toy process again (same modules, same settings) and waits until it is ready. */
  readonly restart: () => Promise<void>
  /** A connection to the deployment's virtual host. */
  readonly broker: () => Connection
  readonly stop: () => Promise<void>
}

/**
 * A fresh database and virtual host; `there` (module names) in a toy process, started first and
 * ready, then `here` in the test's process, both with `config`.
 */
const deploy = async (there: string, here: ReadonlyArray<Module.Module.Any>): Promise<Deployment> => {
  const database = await Services.createDatabase((postgres as { value: string }).value)
  const vhost = await Services.isolatedRabbit((rabbit as { value: string }).value)
  // A process that hosts part of a build refuses to start without the secret (it calls nothing here).
  const env = { ...config, DATABASE_URL: database.url, AMQP_URL: vhost.url, TESSERA_SERVICE_SECRET: "messaging-processes-secret-messaging-processes" }
  let toy = await Toy.spawnHost(there, env)
  let runtime: ManagedRuntime.ManagedRuntime<any, unknown> | undefined
  const connections: Array<Connection> = []
  const stop = async () => {
    await runtime?.dispose()
    await toy.stop()
    for (const connection of connections) await connection.close().catch(() => undefined)
    await database.drop()
    await vhost.drop()
  }
  try {
    await Processes.waitReady(toy)
    runtime = ManagedRuntime.make(
      TestHost.layer(here, { _tag: "Postgres", url: database.url }, [], { ...config, AMQP_URL: vhost.url }) as Layer.Layer<any, unknown>
    )
    await runtime.runtime()
  } catch (error) {
    await stop()
    throw error
  }
  return {
    databaseUrl: database.url,
    amqpUrl: vhost.url,
    run: (effect) => runtime!.runPromise(effect),
    toy: () => toy,
    kill: async () => {
      toy.process.kill("SIGKILL")
      await toy.exited
    },
    restart: async () => {
      toy = await Toy.spawnHost(there, env)
      await Processes.waitReady(toy)
    },
    broker: () => {
      const connection = new Connection(vhost.url)
      connections.push(connection)
      return connection
    },
    stop
  }
}

/** The toy events toysub applied, in the order applied (read from its schema). */
const appliedIn = (databaseUrl: string) =>
  Toy.withDatabase(databaseUrl, (sql) =>
    sql<{ messageId: string; aggregate: string; n: number }>`
      SELECT message_id AS "messageId", aggregate, n FROM toysub.toy_applied ORDER BY seq`)

const queue = RabbitBroker.queueOf("toysub", "toypub", "ToyHappened")

describe.skipIf(!postgres.ok || !rabbit.ok)("events between processes through RabbitMQ, one of them killed", () => {
  it("a subscriber process down for a while catches up when it returns: every event applied once, each aggregate's in order", async () => {
    // toysub alone in a process of its own; toypub publishes from the test's process.
    const deployment = await deploy("toysub", [Toy.ToyPubModule])
    try {
      const aggregates = Array.from({ length: 6 }, () => unique("down"))
      const EACH = 20
      const BEFORE_KILL = 7
      const publishRound = (n: number) =>
        deployment.run(Effect.forEach(aggregates, (aggregate) =>
          // A slow handler: the kill finds messages taken from RabbitMQ but not yet applied.
          Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate, n, failTimes: 0, delayMs: 15, rollback: false })), { discard: true }))
      const admin = deployment.broker()
      const waiting = async () => (await admin.queueDeclare({ queue, passive: true })).messageCount

      for (let n = 1; n <= BEFORE_KILL; n++) {
        await publishRound(n)
        await sleep(30)
      }
      await deployment.kill()
      const atKill = (await appliedIn(deployment.databaseUrl)).length
      // The publisher goes on while the subscriber is down.
      for (let n = BEFORE_KILL + 1; n <= EACH; n++) {
        await publishRound(n)
        await sleep(30)
      }
      // Every event is with RabbitMQ (relayed and confirmed), in the subscriber's queue, not applied.
      await waitUntil("every outbox row published", async () =>
        (await deployment.run(Effect.flatMap(Toy.PubClient, (c) => c.outbox()))).every((r) => r.published))
      expect(await waiting()).toBeGreaterThanOrEqual(aggregates.length * (EACH - BEFORE_KILL))
      await sleep(1_000)
      expect((await appliedIn(deployment.databaseUrl)).length).toBe(atKill)

      await deployment.restart()
      const total = aggregates.length * EACH
      await waitUntil(`${total} events applied`, async () => (await appliedIn(deployment.databaseUrl)).length >= total, 90_000, deployment.toy().output)
      await waitUntil("the subscriber's RabbitMQ queue drained", async () => (await waiting()) === 0)
      await sleep(500)
      const applied = await appliedIn(deployment.databaseUrl)
      expect(atKill).toBeLessThan(total)
      expect(applied).toHaveLength(total)
      expect(new Set(applied.map((a) => a.messageId)).size).toBe(total)
      for (const aggregate of aggregates) {
        expect(applied.filter((a) => a.aggregate === aggregate).map((a) => a.n)).toEqual(Array.from({ length: EACH }, (_, i) => i + 1))
      }
      expect(await Toy.withDatabase(deployment.databaseUrl, (sql) => sql`SELECT 1 FROM toysub.dead_letters`)).toEqual([])
    } finally {
      await deployment.stop()
    }
  }, 240_000)

  it("the relay killed between RabbitMQ's confirm and marking the row: the instance taking over publishes it again, applied once", async () => {
    // A relay of toypub in a process of its own, started first: it holds the relay lease. The
    // test's process hosts toypub too (it publishes, its relay waits for the lease) and toysub.
    const deployment = await deploy("toypub", [Toy.ToyPubModule, Toy.ToySubModule])
    const KEY = 4242_1313
    try {
      // The fault point: marking a row published waits on a lock the test holds.
      await Toy.withDatabase(deployment.databaseUrl, (sql) =>
        Effect.gen(function*() {
          yield* sql.unsafe(`CREATE FUNCTION toypub.hold_marking() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_advisory_xact_lock_shared(${KEY}); RETURN NEW; END $$`)
          yield* sql.unsafe(`CREATE TRIGGER hold_marking BEFORE UPDATE OF published_at ON toypub.outbox
            FOR EACH ROW EXECUTE FUNCTION toypub.hold_marking()`)
        }))
      // The test's own queue on the event's routing key: it counts what reaches RabbitMQ.
      const admin = deployment.broker()
      const tap = unique("tap")
      await admin.queueDeclare({ queue: tap, exclusive: true })
      await admin.queueBind({ queue: tap, exchange: Rabbit.EXCHANGE, routingKey: RabbitBroker.routingKeyOf("toypub", "ToyHappened") })

      const aggregate = unique("marked")
      const outcome = await Toy.withDatabase(deployment.databaseUrl, (sql) =>
        Effect.gen(function*() {
          const released = yield* Deferred.make<void>()
          const locked = yield* Deferred.make<void>()
          const holder = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
            yield* sql`SELECT pg_advisory_xact_lock(${KEY})`
            yield* Deferred.succeed(locked, undefined)
            yield* Deferred.await(released)
          })))
          yield* Deferred.await(locked)
          yield* Effect.promise(() => deployment.run(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate, n: 1, failTimes: 0, rollback: false }))))
          const [row] = yield* sql<{ id: string }>`SELECT id FROM toypub.outbox WHERE aggregate = ${aggregate}`
          // RabbitMQ has it (the subscriber applied it) and the relay's UPDATE waits on the lock.
          yield* Effect.promise(() =>
            waitUntil("the event applied and the relay holding at the mark", async () => {
              const applied = (await appliedIn(deployment.databaseUrl)).filter((a) => a.aggregate === aggregate)
              const held = await Toy.withDatabase(deployment.databaseUrl, (s) =>
                s`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory' AND query LIKE 'UPDATE outbox%'`)
              return applied.length === 1 && held.length === 1
            }, 30_000, deployment.toy().output))
          const unmarked = yield* sql<{ published: boolean }>`SELECT published_at IS NOT NULL AS published FROM toypub.outbox WHERE id = ${row!.id}`
          // Killed there. Its database session, blocked in the UPDATE, is ended as the server ends
          // a dead client's (before the lock frees: it would otherwise mark the row yet).
          yield* Effect.promise(deployment.kill)
          yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event = 'advisory' AND query LIKE 'UPDATE outbox%'`
          yield* Deferred.succeed(released, undefined)
          yield* Fiber.join(holder)
          return { id: row!.id, unmarked: unmarked[0]!.published === false }
        }))
      expect(outcome.unmarked).toBe(true)

      // The test's process takes the lease over once the dead holder's has expired, and relays the row again.
      await waitUntil("the row marked by the instance taking over", async () =>
        (await deployment.run(Effect.flatMap(Toy.PubClient, (c) => c.outbox()))).some((r) => r.id === outcome.id && r.published),
        Duration.toMillis(Relay.LEASE) + 15_000)
      // RabbitMQ got the message twice...
      const copies: Array<string> = []
      await waitUntil("both copies on the test's queue", async () => {
        for (let m = await admin.basicGet({ queue: tap, noAck: true }); m !== undefined; m = await admin.basicGet({ queue: tap, noAck: true })) {
          copies.push(m.messageId ?? "")
        }
        return copies.length >= 2
      })
      expect(copies).toEqual([outcome.id, outcome.id])
      // ...and the subscriber applied it once: the aggregate's next event, behind the copy in the
      // subscriber's queue and applied only once the copy is out of its way, comes after one.
      await deployment.run(Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate, n: 2, failTimes: 0, rollback: false })))
      await waitUntil("the next event applied", async () =>
        (await appliedIn(deployment.databaseUrl)).some((a) => a.aggregate === aggregate && a.n === 2))
      expect((await appliedIn(deployment.databaseUrl)).filter((a) => a.aggregate === aggregate).map((a) => a.n)).toEqual([1, 2])
      expect(await deployment.run(Effect.flatMap(Toy.SubClient, (c) => c.queued()))).toBe(0)
    } finally {
      await deployment.stop()
    }
  }, 180_000)
})
