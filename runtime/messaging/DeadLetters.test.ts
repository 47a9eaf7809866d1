/**
 * Dead letters through a subscriber's client (the runtime's `DeadLetters` calls in its contract),
 * with the in-process broker and through RabbitMQ (a vhost of its own), on PostgreSQL and on
 * embedded PGlite: a poison message is dead-lettered with its error without holding up the
 * others, listed, replayed once its handler is fixed and applied exactly once; a replay that fails
 * again is a new dead letter; an unknown or replayed one is refused; admins only.
 */
import { Effect, Exit } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Caller from "../security/Caller.ts"
import * as Toy from "../testing/MessagingToy.ts"
import { appliedOf, unique, waitFor } from "../testing/MessagingToy.ts"
import * as Services from "../testing/Services.ts"
import * as TestHost from "../testing/TestHost.ts"
import * as DeadLetters from "./DeadLetters.ts"

const rabbit = await Services.findRabbit()
const vhost = rabbit.ok ? await Services.isolatedRabbit(rabbit.value) : undefined
afterAll(async () => {
  await vhost?.drop()
})

const CONFIG = {
  TESSERA_EVENTS_RETRY_BACKOFF: "50 millis",
  TESSERA_EVENTS_MAX_DELIVERIES: "3",
  TESSERA_EVENTS_POLL_INTERVAL: "2 seconds"
}

const CUSTOMER = new Caller.Caller({ kind: "user", id: "dead-letters-customer", role: "customer" })

const deadLetters = Effect.map(Toy.SubClient, DeadLetters.clientOf)
const happen = (aggregate: string, n: number, failTimes = 0) =>
  Effect.flatMap(Toy.PubClient, (c) => c.happen({ aggregate, n, failTimes, rollback: false }))

/** The dead letters of `aggregate` (newest first), as an admin lists them. */
const deadOf = (aggregate: string, state?: DeadLetters.State) =>
  Caller.withCaller(TestHost.ADMIN)(
    Effect.map(
      Effect.flatMap(deadLetters, (c) => c.DeadLetters.list({ limit: 101, ...(state ? { state } : {}) })),
      (listed) => listed.items.map((i) => i.deadLetter).filter((d) => d.aggregate === aggregate)
    )
  )
const replay = (id: string) =>
  Caller.withCaller(TestHost.ADMIN)(Effect.flatMap(deadLetters, (c) => c.DeadLetters.replay({ seq: DeadLetters.parseId(id)!.seq })))

const scenarios = (run: <A, E>(effect: Effect.Effect<A, E, any>) => Promise<A>) => {
  it("dead-letters a poison message without holding up the others, lists it, replays it once fixed: applied once", async () => {
    const poisoned = unique("poison")
    const fine = unique("fine")
    await run(happen(poisoned, 1, 99))
    await run(happen(poisoned, 2))
    await run(happen(fine, 1))
    await run(waitFor(Effect.map(appliedOf(fine), (rows) => (rows.length > 0 ? rows : undefined)), "the other aggregate's event"))
    const [dead] = await run(waitFor(Effect.map(deadOf(poisoned), (rows) => (rows.length > 0 ? rows : undefined)), "the dead letter"))
    expect(dead).toMatchObject({
      subscriber: "toysub",
      publisher: "toypub",
      event: "ToyHappened",
      aggregate: poisoned,
      attempts: 3,
      replayedAt: null,
      payload: { aggregate: poisoned, n: 1, failTimes: 99 }
    })
    expect(dead!.id).toMatch(/^toysub-[1-9][0-9]*$/)
    expect(dead!.lastError).toMatch(/toy handler fails .*attempt 3/)
    // Its aggregate's next event went once it was dead-lettered.
    await run(waitFor(Effect.map(appliedOf(poisoned), (rows) => (rows.length > 0 ? rows : undefined)), "the aggregate's next event"))
    expect((await run(appliedOf(poisoned))).map((r) => r.n)).toEqual([2])

    await run(Effect.flatMap(Toy.SubClient, (c) => c.fix({ aggregate: poisoned })))
    const replayed = await run(replay(dead!.id))
    expect(replayed.id).toBe(dead!.id)
    expect(replayed.replayedAt).not.toBeNull()
    const applied = await run(waitFor(Effect.map(appliedOf(poisoned), (rows) => (rows.length >= 2 ? rows : undefined)), "the replayed event"))
    expect(applied.map((r) => r.n)).toEqual([2, 1])
    expect(applied[1]).toMatchObject({ messageId: dead!.messageId, attempt: 1 })
    expect(await run(Effect.flatMap(Toy.SubClient, (c) => c.inbox()))).toContain(dead!.messageId)

    // Replayed once: a second replay is refused, and nothing is applied twice.
    const again = await run(Effect.exit(replay(dead!.id)))
    expect(again).toEqual(Exit.fail(new DeadLetters.DeadLetterAlreadyReplayed({ id: dead!.id })))
    await Effect.runPromise(Effect.sleep("300 millis"))
    expect((await run(appliedOf(poisoned))).map((r) => r.n)).toEqual([2, 1])
    expect((await run(deadOf(poisoned, "replayed"))).map((d) => d.id)).toEqual([dead!.id])
    expect(await run(deadOf(poisoned, "pending"))).toEqual([])
  })

  it("dead-letters a replay that fails again, as a new dead letter with the new error", async () => {
    const poisoned = unique("again")
    await run(happen(poisoned, 1, 99))
    const [first] = await run(waitFor(Effect.map(deadOf(poisoned), (rows) => (rows.length > 0 ? rows : undefined)), "the dead letter"))
    await run(replay(first!.id))
    const [second] = await run(waitFor(Effect.map(deadOf(poisoned, "pending"), (rows) => (rows.length > 0 ? rows : undefined)), "dead again"))
    expect(second!.id).not.toBe(first!.id)
    expect(second).toMatchObject({ messageId: first!.messageId, attempts: 3, replayedAt: null })
    expect(second!.lastError).toMatch(/toy handler fails/)
    // Newest first.
    expect((await run(deadOf(poisoned))).map((d) => d.id)).toEqual([second!.id, first!.id])
    expect(await run(appliedOf(poisoned))).toEqual([])
  })

  it("refuses an unknown dead letter", async () => {
    const exit = await run(Effect.exit(replay("toysub-987654321")))
    expect(exit).toEqual(Exit.fail(new DeadLetters.DeadLetterNotFound({ id: "toysub-987654321" })))
  })

  it("lets admins only list and replay", async () => {
    const list = Effect.flatMap(deadLetters, (c) => c.DeadLetters.list({ limit: 1 }))
    const replayOne = Effect.flatMap(deadLetters, (c) => c.DeadLetters.replay({ seq: "1" }))
    const refusal = (call: Effect.Effect<unknown, unknown, Toy.SubClient>) => Effect.map(Effect.flip(call), (e) => (e as { _tag: string })._tag)
    for (const call of [list, replayOne] as ReadonlyArray<Effect.Effect<unknown, unknown, Toy.SubClient>>) {
      expect(await run(refusal(call))).toBe("Unauthenticated")
      expect(await run(refusal(Caller.withCaller(CUSTOMER)(call)))).toBe("Forbidden")
    }
  })
}

describe("dead letters, in process", () => {
  TestHost.describeOnDatabases(
    "dead letters, in process",
    (database) => TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], database, [], CONFIG),
    scenarios
  )
})

describe.skipIf(!rabbit.ok)("dead letters through RabbitMQ", () => {
  TestHost.describeOnDatabases(
    "dead letters through RabbitMQ",
    (database) =>
      TestHost.layer([Toy.ToyPubModule, Toy.ToySubModule], database, [], { ...CONFIG, AMQP_URL: vhost?.url ?? "" }),
    scenarios
  )
})
