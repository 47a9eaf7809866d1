/**
 * Finds the services a test suite needs, in this order: the environment (`DATABASE_URL`,
 * `AMQP_URL`), the localhost defaults, a testcontainers container when a container engine
 * answers (Docker, or podman's Docker-compatible socket named by `DOCKER_HOST`, with
 * `TESTCONTAINERS_RYUK_DISABLED=true`: podman runs no Ryuk). The containers run the official
 * images, or `TESSERA_TEST_POSTGRES_IMAGE` and `TESSERA_TEST_RABBITMQ_IMAGE` where no registry
 * answers (images built locally, as `.ci/services` builds them). A suite whose service is missing
 * reports itself skipped with the reason, unless `REQUIRE_SERVICES=1` (CI), where the missing
 * service fails the run.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { execFile } from "node:child_process"
import * as net from "node:net"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { EmbeddedPostgres } from "../db/EmbeddedPostgres.ts"

export type Found<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly reason: string }

export const required = process.env.REQUIRE_SERVICES === "1"

const portOpen = (host: string, port: number, timeoutMs = 500) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

/** Runs one statement on the server at `url`, over a connection of its own. */
const execute = (url: string, statement: string) =>
  Effect.scoped(
    Effect.flatMap(PgClient.make({ url: Redacted.make(url), maxConnections: 1 }), (sql) => sql.unsafe(statement))
  ).pipe(Effect.provide(Reactivity.layer))

const canQuery = (url: string) =>
  Effect.runPromise(
    execute(url, "SELECT 1").pipe(
      Effect.timeout("5 seconds"),
      Effect.as(true),
      Effect.catchAllCause(() => Effect.succeed(false))
    )
  )

/** Whether a container engine answers testcontainers (its environment: `DOCKER_HOST` and the rest). */
const engineAnswers = async () => {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers")
    await getContainerRuntimeClient()
    return true
  } catch {
    return false
  }
}

/** A service in a container of its own: where to reach it, and how to remove it. */
export interface Container {
  readonly url: string
  readonly stop: () => Promise<void>
}

/**
 * A PostgreSQL server in a container (`image`: the official image's contract, `POSTGRES_PASSWORD`),
 * through testcontainers: its admin URL once it answers a query. Waited for by a query, not by
 * the image's healthcheck, which podman without systemd never runs.
 */
export const postgresContainer = async (image = process.env.TESSERA_TEST_POSTGRES_IMAGE ?? "postgres:16-alpine"): Promise<Container> => {
  const { GenericContainer, Wait } = await import("testcontainers")
  const password = randomUUID()
  const container = await new GenericContainer(image)
    .withEnvironment({ POSTGRES_USER: "postgres", POSTGRES_PASSWORD: password, POSTGRES_DB: "postgres" })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/))
    .withStartupTimeout(120_000)
    .start()
  const url = `postgres://postgres:${password}@${container.getHost()}:${container.getMappedPort(5432)}/postgres`
  // The official image logs that line for its initialising server too, which takes no TCP.
  for (let i = 0; !(await canQuery(url)); i++) {
    if (i === 60) {
      await container.stop()
      throw new Error(`PostgreSQL in ${image} did not answer a query within a minute`)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return { url, stop: () => container.stop().then(() => undefined) }
}

/** A RabbitMQ broker in a container (`image`: the official image's default user guest), through testcontainers: its URL. */
export const rabbitContainer = async (image = process.env.TESSERA_TEST_RABBITMQ_IMAGE ?? "rabbitmq:3.13-alpine"): Promise<Container> => {
  const { GenericContainer, Wait } = await import("testcontainers")
  const container = await new GenericContainer(image)
    .withExposedPorts(5672)
    .withWaitStrategy(Wait.forLogMessage(/Server startup complete/))
    .withStartupTimeout(180_000)
    .start()
  return {
    url: `amqp://guest:guest@${container.getHost()}:${container.getMappedPort(5672)}`,
    stop: () => container.stop().then(() => undefined)
  }
}

/**
 * Looks for `service` with `find`; under REQUIRE_SERVICES=1 a service not found fails the suite
 * that asked (whether it then skips or not), so that CI never passes on skipped suites.
 */
const demand = async (service: string, find: () => Promise<Found<string>>): Promise<Found<string>> => {
  const found = await find()
  if (!found.ok) unavailable(service, found.reason)
  return found
}

let postgres: Promise<Found<string>> | undefined

/** An admin URL of a PostgreSQL server that may create databases and roles. */
export const findPostgres = (): Promise<Found<string>> =>
  (postgres ??= demand("PostgreSQL", async (): Promise<Found<string>> => {
    const fromEnv = process.env.DATABASE_URL
    if (fromEnv) {
      return (await canQuery(fromEnv))
        ? { ok: true, value: fromEnv }
        : { ok: false, reason: `DATABASE_URL is set but does not answer` }
    }
    const local = "postgres://postgres@127.0.0.1:5432/postgres"
    if ((await portOpen("127.0.0.1", 5432)) && (await canQuery(local))) return { ok: true, value: local }
    if (await engineAnswers()) return { ok: true, value: (await postgresContainer()).url }
    return { ok: false, reason: "no PostgreSQL: DATABASE_URL unset, nothing on 127.0.0.1:5432, no container engine" }
  }))

let rabbit: Promise<Found<string>> | undefined

/** The URL of a RabbitMQ broker: `AMQP_URL`, else the local default, else a container. */
export const findRabbit = (): Promise<Found<string>> =>
  (rabbit ??= demand("RabbitMQ", async (): Promise<Found<string>> => {
    const fromEnv = process.env.AMQP_URL
    const url = new URL(fromEnv ?? "amqp://guest:guest@127.0.0.1:5672")
    const open = await portOpen(url.hostname, Number(url.port || 5672))
    if (open) return { ok: true, value: url.toString() }
    if (fromEnv) return { ok: false, reason: `AMQP_URL is set but ${url.host} does not answer` }
    if (await engineAnswers()) return { ok: true, value: (await rabbitContainer()).url }
    return { ok: false, reason: "no RabbitMQ: AMQP_URL unset, nothing on 127.0.0.1:5672, no container engine" }
  }))

const rabbitmqctl = (...args: ReadonlyArray<string>) =>
  new Promise<boolean>((resolve) => execFile("rabbitmqctl", [...args], { timeout: 30_000 }, (error) => resolve(error === null)))

/**
 * A RabbitMQ virtual host of its own for one deployment under test, on the broker at `url`: its
 * URL, and `drop`. Subscription queues are named after modules (`notifications.orders.OrderConfirmed`),
 * so two deployments on one vhost would take each other's events. Made with `rabbitmqctl` when the
 * broker runs on this machine and the tool answers; otherwise `url` itself (deployments then share
 * the broker's queues, which holds only while they run one at a time).
 */
export const isolatedRabbit = async (url: string): Promise<{ readonly url: string; readonly drop: () => Promise<void> }> => {
  const parsed = new URL(url)
  const local = ["127.0.0.1", "localhost", "::1", "[::1]"].includes(parsed.hostname)
  const vhost = `tessera-test-${randomUUID().slice(0, 8)}`
  const user = decodeURIComponent(parsed.username || "guest")
  if (!local || !(await rabbitmqctl("add_vhost", vhost)) || !(await rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"))) {
    return { url, drop: async () => {} }
  }
  parsed.pathname = `/${encodeURIComponent(vhost)}`
  return { url: parsed.toString(), drop: () => rabbitmqctl("delete_vhost", vhost).then(() => undefined) }
}

/**
 * A new, empty database on the server (dropped by the returned function), so suites never see
 * each other's rows.
 */
export const createDatabase = async (adminUrl: string): Promise<{ readonly url: string; readonly drop: () => Promise<void> }> => {
  const name = `tessera_test_${randomUUID().replace(/-/g, "").slice(0, 16)}`
  const run = (statement: string) => Effect.runPromise(execute(adminUrl, statement))
  await run(`CREATE DATABASE ${name}`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => undefined) }
}

/** Fails (CI) or explains the skip (elsewhere) when a service is missing. */
export const unavailable = (service: string, reason: string): string => {
  if (required) throw new Error(`REQUIRE_SERVICES=1 but ${service} is unavailable: ${reason}`)
  return `skipped: ${service} unavailable (${reason})`
}

/** A database a module suite runs on; `release` drops or deletes it. */
export interface TestDatabase {
  readonly name: string
  readonly database: { readonly _tag: "Postgres"; readonly url: string } | { readonly _tag: "Embedded"; readonly dataDir: string }
  readonly release: () => Promise<void>
}

/**
 * The databases a suite should run on: a fresh database on PostgreSQL (or the reason it is
 * missing) and a fresh embedded one.
 */
export const databases = async (): Promise<ReadonlyArray<{ readonly name: string; readonly acquire: (() => Promise<TestDatabase>) | string }>> => {
  const server = await findPostgres()
  return [
    {
      name: "PostgreSQL",
      acquire: server.ok
        ? async () => {
          const db = await createDatabase(server.value)
          return { name: "PostgreSQL", database: { _tag: "Postgres", url: db.url }, release: db.drop }
        }
        : unavailable("PostgreSQL", server.reason)
    },
    {
      name: "embedded PostgreSQL",
      acquire: async () => {
        const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-test-"))
        return {
          name: "embedded PostgreSQL",
          database: { _tag: "Embedded", dataDir },
          release: async () => fs.rmSync(dataDir, { recursive: true, force: true })
        }
      }
    }
  ]
}

/**
 * A runtime for a suite on `database`: with the embedded database started in it (configured by
 * `config`) when the suite runs on one. Start it in `beforeAll` (`runtime.runtime()`): under load
 * the embedded database takes longer to start than a test may.
 */
export const runtimeOn = (database: TestDatabase, config: Layer.Layer<never>): ManagedRuntime.ManagedRuntime<never, unknown> =>
  ManagedRuntime.make(
    (database.database._tag === "Embedded" ? EmbeddedPostgres.layer.pipe(Layer.provide(config)) : Layer.empty) as Layer.Layer<never>
  )
