/**
 * Sagas survive their process: the saga toy (runtime/testing/SagaToy.ts) served as a process of
 * its own (SagaToyHost.ts), killed with SIGKILL while its sagas are in a step and started again,
 * on PostgreSQL and on embedded PGlite; and, on PostgreSQL, two instances of the module on one
 * database sharing the sagas, one killed, the other finishing its sagas.
 */
import { PGlite } from "@electric-sql/pglite"
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Processes from "../testing/Processes.ts"
import * as Services from "../testing/Services.ts"
import * as ToyHosts from "../testing/ToyHosts.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))

interface LogLine {
  readonly at: number
  readonly instance: string
  readonly id: string
  readonly step: string
  readonly phase: "action" | "compensation" | "end"
  readonly event: "start" | "ok" | "failed" | "interrupted"
  readonly key: string
}

const readLog = (file: string): ReadonlyArray<LogLine> =>
  fs.existsSync(file)
    ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((line) => {
      const [at, instance, id, step, phase, event, key] = line.split(" ")
      return { at: Number(at), instance: instance!, id: id!, step: step!, phase: phase as LogLine["phase"], event: event as LogLine["event"], key: key! }
    })
    : []

const waitUntil = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000, output?: () => string) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out waiting for ${what}${output ? `\n${output()}` : ""}`)
}

const spawnToy = (port: number, env: Record<string, string>) =>
  Processes.spawnProgram(
    process.execPath,
    [...Processes.nodeFlags(), ToyHosts.entry("saga"), "serve"],
    { ...env, PORT: String(port) },
    { cwd: root, port }
  )

const kill = async (server: Processes.Server) => {
  server.process.kill("SIGKILL")
  await server.exited
}

/** Lines of one saga's step and phase for `event`. */
const count = (log: ReadonlyArray<LogLine>, id: string, step: string, phase: string, event = "start") =>
  log.filter((l) => l.id === id && l.step === step && l.phase === phase && l.event === event).length

type Database = { readonly _tag: "Postgres"; readonly url: string } | { readonly _tag: "Embedded"; readonly dataDir: string }

/** Each saga's state, by subject, from the module's `sagas` table. */
const statesOn = async (database: Database): Promise<Record<string, string>> => {
  if (database._tag === "Postgres") {
    const rows = await Effect.runPromise(Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make(database.url), maxConnections: 1 }),
      (sql) => sql<{ subject: string; state: string }>`SELECT subject, state FROM sagatoy.sagas`
    )).pipe(Effect.provide(Reactivity.layer)))
    return Object.fromEntries(rows.map((r) => [r.subject, r.state]))
  }
  const db = await PGlite.create({ dataDir: path.join(database.dataDir, "pg") })
  try {
    const result = await db.query<{ subject: string; state: string }>("SELECT subject, state FROM sagatoy.sagas")
    return Object.fromEntries(result.rows.map((r) => [r.subject, r.state]))
  } finally {
    await db.close()
  }
}

for (const { acquire, name } of await Services.databases()) {
  if (typeof acquire === "string") {
    describe.skip(`a saga process killed mid-step on ${name}`, () => it(acquire, () => {}))
    continue
  }

  describe(`a saga process killed mid-step on ${name}`, () => {
    let database: Services.TestDatabase
    let dir: string
    const servers: Array<Processes.Server> = []
    beforeAll(async () => {
      database = await acquire()
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-saga-crash-"))
    })
    afterAll(async () => {
      await Promise.all(servers.map((s) => s.stop()))
      await database?.release()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    /**
     * A toy saga process's files in the test's folder, named `name`-log, -hold and -start, with
     * `hold` and `start` written, and its environment on this suite's database (`first` instance).
     */
    const toy = (name: string, files: { readonly hold: string; readonly start: string }) => {
      const [log, hold, start] = ["log", "hold", "start"].map((kind) => path.join(dir, `${name}-${kind}`)) as [string, string, string]
      fs.writeFileSync(hold, files.hold)
      fs.writeFileSync(start, files.start)
      const env = {
        ...(database.database._tag === "Postgres"
          ? { DATABASE_URL: database.database.url }
          : { TESSERA_DATA_DIR: database.database.dataDir }),
        TOY_LOG: log,
        TOY_HOLD: hold,
        TOY_START: start,
        TOY_INSTANCE: "first",
        TESSERA_SAGA_POLL_INTERVAL: "200 millis"
      }
      return { log, hold, env }
    }

    it("resumes after a restart: finished steps and compensations are not run again, the cut one runs again, a later failure compensates in reverse", async () => {
      // a and b wait in step two; c fails at three and its compensation of one keeps failing.
      const { env, hold, log } = toy("crash", {
        hold: "crash-a:two\ncrash-b:two\ncrash-c:compensate-one\n",
        start: "crash-a\ncrash-b:three\ncrash-c:three\n"
      })
      const port = await Processes.freePort()
      const first = spawnToy(port, env)
      servers.push(first)
      await Processes.waitReady(first)
      await waitUntil(
        "two sagas to reach step two and one to retry a compensation",
        () => {
          const lines = readLog(log)
          return ["crash-a", "crash-b"].every((id) => count(lines, id, "two", "action") === 1) &&
            count(lines, "crash-c", "one", "compensation") >= 2
        },
        60_000,
        first.output
      )
      await kill(first)

      fs.rmSync(hold)
      const second = spawnToy(port, { ...env, TOY_INSTANCE: "second" })
      servers.push(second)
      await Processes.waitReady(second)
      await waitUntil(
        "both sagas to end",
        () => {
          const lines = readLog(log)
          return count(lines, "crash-a", "three", "action", "ok") === 1 && count(lines, "crash-b", "one", "compensation") === 1 &&
            lines.some((l) => l.id === "crash-c" && l.step === "one" && l.phase === "compensation" && l.instance === "second")
        },
        60_000,
        second.output
      )
      // Anything left to run would show within this.
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      const lines = readLog(log)
      for (const id of ["crash-a", "crash-b"]) {
        expect(count(lines, id, "one", "action"), `${id} one`).toBe(1)
        // Cut by the kill, run again from its start.
        expect(lines.filter((l) => l.id === id && l.step === "two" && l.phase === "action" && l.event === "start").map((l) => l.instance))
          .toEqual(["first", "second"])
        expect(count(lines, id, "three", "action"), `${id} three`).toBe(1)
      }
      // Both runs of a step carry the same key.
      const keys = new Set(lines.filter((l) => l.id === "crash-a" && l.step === "two").map((l) => l.key))
      expect(keys.size).toBe(1)
      expect(lines.filter((l) => l.id === "crash-a" && l.phase === "compensation")).toEqual([])
      // One step (one) ran in the killed process: it is compensated all the same, last.
      expect(lines.filter((l) => l.id === "crash-b" && l.phase === "compensation").map((l) => `${l.step} ${l.instance}`))
        .toEqual(["three second", "two second", "one second"])

      // Compensations done before the kill are not done again; the one cut short is.
      const c = lines.filter((l) => l.id === "crash-c" && l.phase === "compensation")
      expect(c.filter((l) => l.step !== "one").map((l) => `${l.step} ${l.instance}`)).toEqual(["three first", "two first"])
      expect(c.filter((l) => l.step === "one").at(-1)!.instance).toBe("second")
      expect(count(lines, "crash-c", "three", "action")).toBe(1)
      // What a failed saga records after its compensations, done by the process that finished them.
      for (const id of ["crash-b", "crash-c"]) {
        expect(lines.filter((l) => l.id === id && l.phase === "end").map((l) => `${l.key} ${l.instance}`), id)
          .toEqual(["failed-at-three second"])
      }
      expect(lines.filter((l) => l.id === "crash-a" && l.phase === "end")).toEqual([])

      await second.stop()
      expect(await statesOn(database.database)).toEqual({ "crash-a": "completed", "crash-b": "compensated", "crash-c": "compensated" })
    }, 180_000)

    it("stops on SIGTERM mid-step with exit 0, compensating nothing, and the saga completes after a restart", async () => {
      // A stopping process interrupts its sagas: they resume, they are not undone. (Once, the
      // interruption ran the steps' compensations, which waited for ever on an engine stopping.)
      const { env, hold, log } = toy("term", { hold: "term-a:two\n", start: "term-a\n" })
      const port = await Processes.freePort()
      const first = spawnToy(port, env)
      servers.push(first)
      await Processes.waitReady(first)
      await waitUntil("the saga to reach step two", () => count(readLog(log), "term-a", "two", "action") === 1, 60_000, first.output)
      expect(await first.stop(), first.output()).toBe(0)
      expect(readLog(log).filter((l) => l.id === "term-a" && l.phase === "compensation")).toEqual([])

      fs.rmSync(hold)
      const second = spawnToy(port, { ...env, TOY_INSTANCE: "second" })
      servers.push(second)
      await Processes.waitReady(second)
      await waitUntil("the saga to end", () => count(readLog(log), "term-a", "three", "action", "ok") === 1, 60_000, second.output)
      expect(readLog(log).filter((l) => l.id === "term-a" && l.phase === "compensation")).toEqual([])
      await second.stop()
      expect((await statesOn(database.database))["term-a"]).toBe("completed")
    }, 180_000)
  })
}

const server = await Services.findPostgres()

describe.skipIf(!server.ok)("two instances of a module that runs sagas, on one PostgreSQL database", () => {
  let database: { readonly url: string; readonly drop: () => Promise<void> }
  let dir: string
  const servers: Array<Processes.Server> = []
  beforeAll(async () => {
    if (!server.ok) return
    database = await Services.createDatabase(server.value)
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-saga-pair-"))
  })
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()))
    await database?.drop()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  /** How many of the module's shard locks each runner holds (its `cluster_locks` rows, unexpired). */
  const shardHolders = () =>
    Effect.runPromise(Effect.scoped(Effect.flatMap(
      PgClient.make({ url: Redacted.make(database.url), maxConnections: 1 }),
      (sql) =>
        sql<{ address: string; shards: number }>`
          SELECT address, count(*)::int AS shards FROM sagatoy.cluster_locks
          WHERE acquired_at > now() - interval '3 seconds'
          GROUP BY address`.pipe(Effect.catchAll(() => Effect.succeed([])))
    )).pipe(Effect.provide(Reactivity.layer)))

  it("runs each saga on one instance at a time, and the survivor finishes the sagas of the one killed", async () => {
    const log = path.join(dir, "log")
    const hold = path.join(dir, "hold")
    const start = path.join(dir, "start")
    fs.writeFileSync(hold, "two")
    const env = {
      DATABASE_URL: database.url,
      TOY_LOG: log,
      TOY_HOLD: hold,
      TESSERA_SAGA_POLL_INTERVAL: "200 millis",
      TESSERA_SAGA_LOCK_EXPIRATION: "3 seconds"
    }
    // Started at the same moment on a new database: both make the engine's tables at once.
    const [portA, portB] = [await Processes.freePort(), await Processes.freePort()]
    const a = spawnToy(portA, { ...env, TOY_INSTANCE: "a", TOY_START: start })
    const b = spawnToy(portB, { ...env, TOY_INSTANCE: "b" })
    servers.push(a, b)
    await Promise.all([Processes.waitReady(a), Processes.waitReady(b)])
    // The cluster spreads the 100 shards over both runners, each holding its shards' locks.
    await waitUntil("both instances to hold shards", async () => {
      const holders = await shardHolders()
      return holders.length === 2 && holders.every((h) => h.shards > 0) && holders.reduce((n, h) => n + h.shards, 0) === 100
    }, 60_000, () => a.output() + b.output())

    const ids = Array.from({ length: 12 }, (_, i) => `pair-${i}`)
    fs.writeFileSync(start, ids.join("\n") + "\n")
    await waitUntil("every saga to reach step two", () => ids.every((id) => count(readLog(log), id, "two", "action") >= 1))
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const before = readLog(log)
    const owner = new Map(ids.map((id) => {
      const runs = before.filter((l) => l.id === id && l.step === "two" && l.event === "start")
      // One instance runs it; nothing interrupted it to run it elsewhere.
      expect(runs, id).toHaveLength(1)
      expect(before.filter((l) => l.id === id && l.event === "interrupted"), id).toEqual([])
      return [id, runs[0]!.instance] as const
    }))
    const onA = ids.filter((id) => owner.get(id) === "a")
    expect(onA.length).toBeGreaterThan(0)
    expect(onA.length).toBeLessThan(ids.length)

    const killedAt = Date.now()
    await kill(a)
    // After its lock expiration the dead instance's sagas resume on the other, still in step two.
    await waitUntil(
      "b to take over a's sagas",
      () => onA.every((id) => readLog(log).some((l) => l.id === id && l.step === "two" && l.instance === "b" && l.event === "start")),
      60_000,
      b.output
    )
    fs.rmSync(hold)
    await waitUntil("every saga to end", () => ids.every((id) => count(readLog(log), id, "three", "action", "ok") === 1), 60_000, b.output)

    const lines = readLog(log)
    for (const id of ids) {
      const twos = lines.filter((l) => l.id === id && l.step === "two" && l.event === "start")
      expect(twos.map((l) => l.instance), id).toEqual(owner.get(id) === "a" ? ["a", "b"] : ["b"])
      // Never on both at once: b began a's saga after a was killed.
      if (owner.get(id) === "a") expect(twos[1]!.at, id).toBeGreaterThan(killedAt)
      expect(count(lines, id, "one", "action"), id).toBe(1)
      expect(count(lines, id, "three", "action"), id).toBe(1)
    }
    await b.stop()
    expect(Object.values(await statesOn({ _tag: "Postgres", url: database.url }))).toEqual(ids.map(() => "completed"))
  }, 240_000)
})
