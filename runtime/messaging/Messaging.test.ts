/**
 * Events between modules on the in-process dispatcher, on PostgreSQL and on embedded PGlite,
 * through two toy modules hosted as any module is (runtime/testing/MessagingToy.ts): published in
 * the publishing transaction or not at all, applied once under duplicated delivery, a failing
 * handler retried then dead-lettered with its error without holding up the others, each
 * aggregate's events in order, and old rows purged.
 */
import { WorkflowEngine } from "@effect/workflow"
import { Cause, Effect, Either, Exit, Layer, ManagedRuntime } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Host from "../Host.ts"
import * as Module from "../Module.ts"
import * as Topology from "../Topology.ts"
import * as Toy from "../testing/MessagingToy.ts"
import { appliedOf, unique, waitFor } from "../testing/MessagingToy.ts"
import * as Services from "../testing/Services.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as Event from "./Event.ts"
import * as Messaging from "./Messaging.ts"

const pub = Toy.PubClient
const sub = Toy.SubClient

const happen = (aggregate: string, n: number, failTimes = 0) =>
  Effect.flatMap(pub, (c) => c.happen({ aggregate, n, failTimes, rollback: false }))

// Checked by the compiler: what a module's handlers and event handlers may require.
export const undeclared = () => [
  Module.make({
    client: Toy.PubClient,
    // @ts-expect-error the handlers need an Outbox, which only declared `publishes` bring
    handlers: Toy.ToyPubModule.handlers
  }),
  Module.make({
    client: Toy.SubClient,
    handlers: Toy.ToySubModule.handlers,
    subscribes: [
      // @ts-expect-error an event handler gets the module's SqlClient (and Outbox), nothing else
      Event.on(Toy.ToyHappened, () => Effect.asVoid(WorkflowEngine.WorkflowEngine))
    ]
  }),
  Module.make({
    client: Toy.SubClient,
    handlers: Toy.ToySubModule.handlers,
    // @ts-expect-error a module publishes only events declared under its own name
    publishes: [Toy.ToyHappened]
  })
]

describe("where events can be delivered", () => {
  const modules = [Toy.ToyPubModule, Toy.ToySubModule]
  it("accepts a process hosting both ends of every subscription, or neither", () => {
    expect(Messaging.problems(modules, ["toypub", "toysub"])).toEqual([])
    expect(Messaging.problems(modules, [])).toEqual([])
  })
  it("refuses a process hosting one end of a subscription only, naming both modules", () => {
    for (const hosted of [["toypub"], ["toysub"]]) {
      const [problem] = Messaging.problems(modules, hosted)
      expect(problem).toMatch(/toysub subscribes to toypub's ToyHappened/)
      expect(problem).toMatch(/set AMQP_URL/)
    }
  })
  it("does not start the events of a process hosting the subscriber without its publisher", async () => {
    const topology = Either.getOrThrow(Topology.resolve(Host.nodes(modules), { hosted: "toysub", peers: "" }))
    const exit = await Effect.runPromiseExit(Layer.launch(Host.make(modules, topology).messaging) as Effect.Effect<never, unknown>)
    expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(
      /toysub subscribes to toypub's ToyHappened, and toysub runs in this process but toypub does not/
    )
  })
  it("refuses a subscription to an event no module of the build publishes", () => {
    expect(Messaging.problems([Toy.ToySubModule], ["toysub"])).toEqual([
      "toysub subscribes to toypub's ToyHappened, but this build has no module toypub"
    ])
  })
  it("refuses a module declaring one event twice", () => {
    expect(() => Module.make({ client: Toy.PubClient, handlers: Toy.ToyPubModule.handlers, publishes: [Toy.ToyHappened, Toy.ToyHappened] }))
      .toThrow(/declares ToyHappened twice/)
  })
})

TestHost.describeOnDatabases(
  "events between modules in process",
  (database) =>
    TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], database, [], {
      TESSERA_EVENTS_RETRY_BACKOFF: "200 millis",
      TESSERA_EVENTS_MAX_DELIVERIES: "3",
      TESSERA_EVENTS_POLL_INTERVAL: "3 seconds"
    }),
  (run) => {
    it("delivers an event published in a committed transaction to the subscriber, once", async () => {
      const aggregate = unique("ok")
      await run(happen(aggregate, 1))
      // That the commit wakes the relay, rather than its polling, is shown by the two-instance case below.
      const [applied] = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the event"))
      expect(applied).toMatchObject({ aggregate, n: 1, attempt: 1 })
      const outbox = await run(Effect.flatMap(pub, (c) => c.outbox()))
      const row = outbox.find((r) => r.aggregate === aggregate)!
      expect(row).toMatchObject({ event: "ToyHappened", id: applied!.messageId })
      expect(await run(waitFor(Effect.map(Effect.flatMap(pub, (c) => c.outbox()), (rows) =>
        rows.find((r) => r.id === row.id && r.published)), "the row marked published"))).toBeDefined()
      expect(await run(Effect.flatMap(sub, (c) => c.inbox()))).toContain(applied!.messageId)
      expect(await run(Effect.flatMap(sub, (c) => c.queued()))).toBe(0)
    })

    it("publishes nothing when the publishing transaction rolls back, and refuses to publish outside a transaction", async () => {
      const aggregate = unique("rolled-back")
      const before = await run(Effect.flatMap(pub, (c) => c.things()))
      const exit = await run(Effect.exit(Effect.flatMap(pub, (c) => c.happen({ aggregate, n: 1, failTimes: 0, rollback: true }))))
      expect(exit).toEqual(Exit.fail(new Toy.ToyRolledBack()))
      const outside = await run(Effect.exit(Effect.flatMap(pub, (c) => c.happenOutside({ aggregate, n: 2, failTimes: 0 }))))
      expect(Exit.isFailure(outside) && Cause.pretty(outside.cause)).toMatch(/published ToyHappened outside a transaction/)
      // A later event of another aggregate arrives: the two above would have come first.
      const later = unique("later")
      await run(happen(later, 1))
      await run(waitFor(Effect.map(appliedOf(later), (rows) => (rows.length > 0 ? rows : undefined)), "the later event"))
      expect(await run(appliedOf(aggregate))).toEqual([])
      expect((await run(Effect.flatMap(pub, (c) => c.outbox()))).filter((r) => r.aggregate === aggregate)).toEqual([])
      // The happening itself rolled back with its event; the one outside a transaction was never written.
      expect(await run(Effect.flatMap(pub, (c) => c.things()))).toBe(before + 1)
    })

    it("applies a message once when the relay hands it again (as after dying between publishing and marking)", async () => {
      const aggregate = unique("again")
      await run(happen(aggregate, 1))
      await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the event"))
      const inboxBefore = (await run(Effect.flatMap(sub, (c) => c.inbox()))).length
      await run(Effect.flatMap(pub, (c) => c.forgetPublished()))
      // Every outbox row goes to the broker again, and the queue again...
      await run(waitFor(Effect.map(Effect.flatMap(pub, (c) => c.outbox()), (rows) => rows.every((r) => r.published) ? true : undefined), "the rows relayed again"))
      await run(waitFor(Effect.map(Effect.flatMap(sub, (c) => c.queued()), (n) => (n === 0 ? true : undefined)), "the queue drained"))
      // ...and changes nothing: each applied once, the inbox as it was.
      expect(await run(appliedOf(aggregate))).toHaveLength(1)
      const all = await run(Effect.flatMap(sub, (c) => c.applied()))
      expect(new Set(all.map((a) => a.messageId)).size).toBe(all.length)
      expect(await run(Effect.flatMap(sub, (c) => c.inbox()))).toHaveLength(inboxBefore)
    })

    it("retries a failing handler, dead-letters the message after TESSERA_EVENTS_MAX_DELIVERIES failures with its error, and holds up no other aggregate", async () => {
      const poisoned = unique("poison")
      const other = unique("other")
      // In one transaction, so that the other aggregate's events are queued behind the poison at once.
      await run(Effect.flatMap(pub, (c) => c.happenAll({ items: [
        { aggregate: poisoned, n: 1, failTimes: 99 },
        { aggregate: poisoned, n: 2, failTimes: 0 },
        { aggregate: other, n: 1, failTimes: 0 },
        { aggregate: other, n: 2, failTimes: 0 }
      ] })))
      const dead = await run(waitFor(
        Effect.map(Effect.flatMap(sub, (c) => c.deadLetters()), (rows) => rows.find((r) => r.aggregate === poisoned)),
        "the dead letter"
      ))
      expect(dead).toMatchObject({ event: "ToyHappened", attempts: 3, payload: { aggregate: poisoned, n: 1, failTimes: 99 } })
      expect(dead.error).toContain(`toy handler fails ${poisoned}#1 (attempt 3)`)
      // The poisoned aggregate's next event goes once the poison is out of its way.
      const after = await run(waitFor(Effect.map(appliedOf(poisoned), (rows) => (rows.length > 0 ? rows : undefined)), "the next event"))
      expect(after.map((a) => a.n)).toEqual([2])
      // The other aggregate was applied while the poison was failing, before it was dead-lettered.
      const all = await run(Effect.flatMap(sub, (c) => c.applied()))
      const otherDone = all.findIndex((a) => a.aggregate === other && a.n === 2)
      const poisonedNext = all.findIndex((a) => a.aggregate === poisoned)
      expect(otherDone).toBeGreaterThanOrEqual(0)
      expect(otherDone).toBeLessThan(poisonedNext)
      // Each applied once: what a batch applied beside the poison before it failed was undone (Inbox.applyAll), then applied alone.
      expect(all.filter((a) => a.aggregate === other).map((a) => [a.n, a.attempt])).toEqual([[1, 1], [2, 1]])
      expect((await run(Effect.flatMap(sub, (c) => c.deadLetters()))).filter((d) => d.aggregate === other)).toEqual([])
    })

    it("applies each aggregate's events in the order they were published, a retried one holding up the rest of its aggregate", async () => {
      const a = unique("a")
      const b = unique("b")
      // a#1 fails twice (then succeeds on its third and last delivery); b's events do not wait for it.
      const items = ([[a, 1, 2], [b, 1, 0], [a, 2, 0], [b, 2, 0], [a, 3, 1], [b, 3, 0], [a, 4, 0]] as const)
        .map(([aggregate, n, failTimes]) => ({ aggregate, n, failTimes }))
      await run(Effect.flatMap(pub, (c) => c.happenAll({ items })))
      const done = await run(waitFor(Effect.map(Effect.flatMap(sub, (c) => c.applied()), (rows) =>
        rows.filter((r) => r.aggregate === a).length === 4 ? rows : undefined), "every event of a"))
      expect(done.filter((r) => r.aggregate === a).map((r) => [r.n, r.attempt])).toEqual([[1, 3], [2, 1], [3, 2], [4, 1]])
      expect(done.filter((r) => r.aggregate === b).map((r) => r.n)).toEqual([1, 2, 3])
      const bDone = done.findIndex((r) => r.aggregate === b && r.n === 3)
      const aFirst = done.findIndex((r) => r.aggregate === a)
      expect(bDone).toBeLessThan(aFirst)
    })

    it("relays nothing while another instance holds the relay lease, and takes over once it has expired", async () => {
      const aggregate = unique("leased")
      await run(Effect.flatMap(pub, (c) => c.leaseTo({ holder: "another-instance", forMs: 60_000 })))
      await run(happen(aggregate, 1))
      await run(Effect.sleep("500 millis"))
      expect(await run(appliedOf(aggregate))).toEqual([])
      expect((await run(Effect.flatMap(pub, (c) => c.outbox()))).find((r) => r.aggregate === aggregate)).toMatchObject({ published: false })
      await run(Effect.flatMap(pub, (c) => c.leaseTo({ holder: "another-instance", forMs: -1 })))
      // Found at the next poll (every 3 s here): nothing wakes a relay for a lease that expired.
      const applied = await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the event"))
      expect(applied.map((a) => a.n)).toEqual([1])
    })

    it("purges published outbox rows and inbox records older than the retention, and nothing younger", async () => {
      const aggregate = unique("purge")
      await run(happen(aggregate, 1))
      await run(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the event"))
      await run(waitFor(Effect.map(Effect.flatMap(pub, (c) => c.outbox()), (rows) => rows.every((r) => r.published) ? true : undefined), "every row published"))
      await run(Effect.flatMap(pub, (c) => c.purge({ retentionMs: 60_000 })))
      await run(Effect.flatMap(sub, (c) => c.purge({ retentionMs: 60_000 })))
      expect((await run(Effect.flatMap(pub, (c) => c.outbox()))).length).toBeGreaterThan(0)
      expect((await run(Effect.flatMap(sub, (c) => c.inbox()))).length).toBeGreaterThan(0)
      await run(Effect.sleep("20 millis"))
      await run(Effect.flatMap(pub, (c) => c.purge({ retentionMs: 1 })))
      await run(Effect.flatMap(sub, (c) => c.purge({ retentionMs: 1 })))
      expect(await run(Effect.flatMap(pub, (c) => c.outbox()))).toEqual([])
      expect(await run(Effect.flatMap(sub, (c) => c.inbox()))).toEqual([])
    })
  }
)

const server = await Services.findPostgres()

describe.skipIf(!server.ok)("events between two instances of both modules on one PostgreSQL database", () => {
  // No polling to speak of: an instance learns of the other's events by LISTEN/NOTIFY alone.
  const config = { TESSERA_EVENTS_RETRY_BACKOFF: "50 millis", TESSERA_EVENTS_POLL_INTERVAL: "1 minute" }
  let database: { readonly url: string; readonly drop: () => Promise<void> } | undefined
  const instances: Array<ManagedRuntime.ManagedRuntime<any, unknown>> = []
  beforeAll(async () => {
    database = await Services.createDatabase((server as { readonly value: string }).value)
    for (let i = 0; i < 2; i++) {
      const instance = ManagedRuntime.make(TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], { _tag: "Postgres", url: database.url }, [], config))
      await instance.runtime()
      instances.push(instance)
    }
  }, 60_000)
  afterAll(async () => {
    for (const instance of instances) await instance.dispose()
    await database?.drop()
  })

  it("applies every event once and each aggregate's in order, whichever instance published it, woken by notifications", async () => {
    const aggregates = ["w", "x", "y", "z"].map(unique)
    const published: Array<Promise<void>> = []
    for (let n = 1; n <= 8; n++) {
      for (const [i, aggregate] of aggregates.entries()) {
        // Each instance publishes half; an aggregate's events one after another, the aggregates at once.
        const instance = instances[(n + i) % 2]!
        published.push(instance.runPromise(Effect.flatMap(pub, (c) => c.happen({ aggregate, n, failTimes: n % 3 === 0 ? 1 : 0, delayMs: 5, rollback: false }))))
      }
      await Promise.all(published.splice(0))
    }
    const applied = await instances[0]!.runPromise(waitFor(
      Effect.map(Effect.flatMap(sub, (c) => c.applied()), (rows) => (rows.length >= 32 ? rows : undefined)),
      "every event applied",
      20_000
    ))
    expect(applied).toHaveLength(32)
    expect(new Set(applied.map((a) => a.messageId)).size).toBe(32)
    for (const aggregate of aggregates) {
      expect(applied.filter((a) => a.aggregate === aggregate).map((a) => a.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    }
    expect(applied.filter((a) => a.n % 3 === 0).every((a) => a.attempt === 2)).toBe(true)
    await instances[1]!.runPromise(Effect.sleep("300 millis"))
    expect(await instances[1]!.runPromise(Effect.flatMap(sub, (c) => c.applied()))).toHaveLength(32)
    expect(await instances[1]!.runPromise(Effect.flatMap(sub, (c) => c.deadLetters()))).toEqual([])

    // One event published by each instance alone: one of them does not hold the relay lease, and
    // the holder learns of its event from the notification only.
    for (const instance of instances) {
      const aggregate = unique("alone")
      await instance.runPromise(happen(aggregate, 1))
      // Polling (every minute here) would not find it within 20 s.
      await instance.runPromise(waitFor(Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)), "the event"))
    }
  }, 90_000)
})

describe("the relay on an embedded database after a process that held its lease died", () => {
  it("takes the lease over at start: a database one process owns has no other relay", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-relay-"))
    const host = () =>
      ManagedRuntime.make(TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], { _tag: "Embedded", dataDir }, [], {
        TESSERA_EVENTS_POLL_INTERVAL: "1 minute"
      }))
    try {
      const first = host()
      // As a process that died holding it would leave it.
      await first.runPromise(Effect.flatMap(pub, (c) => c.leaseTo({ holder: "a-dead-process", forMs: 60_000 })))
      await first.dispose()
      const second = host()
      try {
        const aggregate = unique("restarted")
        await second.runPromise(happen(aggregate, 1))
        const applied = await second.runPromise(waitFor(
          Effect.map(appliedOf(aggregate), (rows) => (rows.length > 0 ? rows : undefined)),
          "the event",
          5_000
        ))
        expect(applied.map((a) => a.n)).toEqual([1])
      } finally {
        await second.dispose()
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)
})
