/**
 * `GET /health/live`: the process answers. `GET /health/ready`: 200 only when every hosted module
 * has its migrations applied and every peer this process calls answers, with this process's RPC
 * connection to it open; the body lists each module with `local` or the URL it is reached at.
 */
import { HttpApiBuilder, HttpMiddleware, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import type { Hosted } from "./Host.ts"
import * as Migrations from "./db/Migrations.ts"
import type { Location } from "./Topology.ts"

export interface ModuleHealth {
  readonly name: string
  readonly location: string
  readonly ready: boolean
  readonly detail: string
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
  }>
  readonly locations: ReadonlyMap<string, Location>
  /** Whether this process's RPC connection to a remote module is open. */
  readonly connected: (name: string) => boolean
}) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const ready = Effect.gen(function*() {
        const checks = [...options.locations].map(([name, location]) => {
          const status = location._tag === "Remote"
            ? Effect.map(peerStatus(location.url), (s) =>
              s.ready && !options.connected(name) ? { ready: false, detail: "answers; RPC connection not open yet" } : s)
            : (options.hosted.find((h) => h.name === name)?.status ?? Effect.succeed({ ready: false, detail: "not hosted" }))
          return Effect.map(status, (s): ModuleHealth => ({
            name,
            location: location._tag === "Local" ? "local" : location.url,
            ...s
          }))
        })
        const modules = yield* Effect.all(checks, { concurrency: "unbounded" })
        const ok = modules.every((m) => m.ready)
        return yield* HttpServerResponse.json({ status: ok ? "ready" : "not ready", modules }, { status: ok ? 200 : 503 })
      }).pipe(Effect.provide(context))
      // Probes come every few seconds: they are not logged.
      yield* router.get("/health/live", HttpMiddleware.withLoggerDisabled(HttpServerResponse.json({ status: "live" })))
      yield* router.get("/health/ready", HttpMiddleware.withLoggerDisabled(ready))
    })
  )

