/**
 * These are the routes of a process that serves; a starting or stopping one answers
 * `/health/live` 200 and `/health/ready` 503 from `Startup.ts`. A peer counts as up when its
 * `/health/live` answers and this process's RPC connection to it is open (a starting peer
 * answers the connection 503): not its readiness, which would make peers that call each other
 * wait for each other.
 *
 * `GET /health/live`: the process answers and none of its hosted modules' connection pools is
 * wedged. `GET /health/ready`: 200 only when every hosted module
 * has its migrations applied and every peer this process calls answers (for a module with several
 * instances, one of them), with this process's RPC connection to it open; the body lists each
 * module with `local` or where it is reached (`TESSERA_PEERS`'s location), and each instance of
 * a remote one.
 *
 * Liveness and the database: a process should be restarted when restarting it helps, and only
 * then. A pool is wedged when every one of its connections has stayed held, none handed out or
 * given back, for `TESSERA_DB_STALL_TIMEOUT` (`Gate.stalledFor`): something in this process
 * keeps them (a leak, or the embedded database, which runs in this process, not answering), and
 * a restart frees them. Readiness probes run a statement through the same pool, so a database
 * that stops answering keeps a connection held and shows here even without other traffic. A
 * PostgreSQL server that is down or slow does not wedge the pool: its connects fail, its
 * statements time out, and connections change hands; liveness stays 200 and readiness says 503,
 * since restarting every process would not bring the server back (and Kubernetes would
 * restart-loop every pod).
 */
import { HttpApiBuilder, HttpMiddleware, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import type { Hosted } from "./Host.ts"
import * as Migrations from "./db/Migrations.ts"
import { type Location, show } from "./Topology.ts"
import * as Settings from "./Settings.ts"

export interface ModuleHealth {
  readonly name: string
  readonly location: string
  readonly ready: boolean
  readonly detail: string
  /** A module in another process: each of its instances (one, or several: Topology.ts). */
  readonly instances?: ReadonlyArray<{ readonly url: string; readonly ready: boolean; readonly detail: string }>
}

const CHECK_TIMEOUT = Duration.seconds(2)

/** A hosted module is ready when its ledger has reached its newest migration file. */
export const moduleStatus = ({ database }: Hosted) =>
  database === undefined
    ? Effect.succeed({ ready: true, detail: "keeps no data" })
    : Migrations.applied.pipe(
      Effect.provideService(SqlClient.SqlClient, database.sql),
      Effect.timeout(CHECK_TIMEOUT),
      Effect.map((applied) =>
        applied >= database.latest
          ? { ready: true, detail: `migrated to ${applied} (${database.location})` }
          : { ready: false, detail: `migrated to ${applied} of ${database.latest}` }
      ),
      Effect.catchAllCause(() => Effect.succeed({ ready: false, detail: "database unreachable" }))
    )

/** How long every connection of a hosted module's pool has been held with none changing hands. */
export const moduleStall = ({ database }: Hosted) =>
  database === undefined ? Effect.succeed(Duration.zero) : database.gate.stalledFor

const stallTimeout = Settings.dbStallTimeout.config

/** A peer is up when its `/health/live` answers 200. */
const peerStatus = (url: string) =>
  Effect.tryPromise((signal) => fetch(`${url}/health/live`, { signal })).pipe(
    Effect.timeout(CHECK_TIMEOUT),
    Effect.map((response) =>
      response.ok ? { ready: true, detail: "answers" } : { ready: false, detail: `answers ${response.status}` }
    ),
    Effect.catchAllCause(() => Effect.succeed({ ready: false, detail: "unreachable" }))
  )

export const routes = (options: {
  readonly hosted: ReadonlyArray<{
    readonly name: string
    readonly status: Effect.Effect<{ readonly ready: boolean; readonly detail: string }, never, any>
    /** `moduleStall` of the module. */
    readonly stall: Effect.Effect<Duration.Duration, never, any>
  }>
  readonly locations: ReadonlyMap<string, Location>
  /** The instances of a remote module now, and whether this process's RPC connection to each is open. */
  readonly instances: (name: string) => ReadonlyArray<{ readonly url: string; readonly connected: boolean }>
}) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const stallLimit = yield* Effect.orDie(stallTimeout)
      const live = Effect.gen(function*() {
        const stalls = yield* Effect.all(options.hosted.map((h) => Effect.map(h.stall, (stall) => ({ name: h.name, stall }))))
        const wedged = stalls
          .filter(({ stall }) => Duration.greaterThanOrEqualTo(stall, stallLimit))
          .map(({ name, stall }) => ({
            name,
            detail: `every database connection held for ${Math.round(Duration.toSeconds(stall))} s, none given back`
          }))
        if (wedged.length === 0) return yield* HttpServerResponse.json({ status: "live" })
        yield* Effect.logError("not live: a database pool is wedged", { modules: wedged })
        return yield* HttpServerResponse.json({ status: "not live", modules: wedged }, { status: 503 })
      }).pipe(Effect.provide(context))
      const ready = Effect.gen(function*() {
        const checks = [...options.locations].map(([name, location]): Effect.Effect<ModuleHealth, never, any> => {
          if (location._tag === "Local") {
            const status = options.hosted.find((h) => h.name === name)?.status ?? Effect.succeed({ ready: false, detail: "not hosted" })
            return Effect.map(status, (s) => ({ name, location: "local", ...s }))
          }
          const instances = options.instances(name)
          return Effect.map(
            Effect.forEach(instances, ({ connected, url }) =>
              Effect.map(peerStatus(url), (s) => ({
                url,
                ...(s.ready && !connected ? { ready: false, detail: "answers; RPC connection not open yet" } : s)
              })), { concurrency: "unbounded" }),
            (checked) => {
              const up = checked.filter((i) => i.ready).length
              // One instance that answers is enough to serve: the balancer sends the calls to it.
              const detail = checked.length === 0
                ? "no instance known"
                : checked.length === 1
                ? checked[0]!.detail
                : `${up} of ${checked.length} instances answer`
              return { name, location: show(location.peer), ready: up > 0, detail, instances: checked }
            }
          )
        })
        const modules = yield* Effect.all(checks, { concurrency: "unbounded" })
        const ok = modules.every((m) => m.ready)
        return yield* HttpServerResponse.json({ status: ok ? "ready" : "not ready", modules }, { status: ok ? 200 : 503 })
      }).pipe(Effect.provide(context))
      // Probes come every few seconds: they are not logged.
      yield* router.get("/health/live", HttpMiddleware.withLoggerDisabled(live))
      yield* router.get("/health/ready", HttpMiddleware.withLoggerDisabled(ready))
    })
  )

