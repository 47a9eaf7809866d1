/**
 * The only way a module's statements reach a pool's connections: at most `connections` fibers
 * hold one at a time, a fiber waits for its turn at most `acquireTimeout`, and a statement runs
 * at most `statementTimeout`. Whatever interrupts a fiber (a client gone, a timeout, shutdown),
 * at whatever point, the connection and the turn it held are given back.
 *
 * Why a gate in front of the pool rather than the pool's own queue: @effect/sql-pg (0.53)
 * reserves a connection (`reserve`, every transaction) with `pg-pool`'s `connect` inside an
 * `Effect.async` that registers no cancellation. A fiber interrupted while it waits in pg-pool's
 * queue is gone when pg-pool hands it the connection later, and nobody releases that connection:
 * one interrupted waiter costs a PostgreSQL pool one connection for good, and wedges the embedded
 * database (a pool of one) at once. Here fibers wait on an Effect semaphore, which an
 * interrupted waiter simply leaves; a fiber asks pg-pool only once it holds a turn, when a
 * connection is free (or about to be opened), and that short step runs uninterruptibly, so the
 * connection always reaches the scope that releases it.
 *
 * A timeout or a pool that cannot connect dies with `unavailable`: to callers the module is
 * unavailable, as one that cannot be reached (503 with Retry-After at the gateway).
 */
import type { SqlClient, SqlConnection, SqlError } from "@effect/sql"
import { RpcClientError } from "@effect/rpc"
import { Cause, Clock, Config, Duration, Effect, Exit, Option, Schedule, type Scope } from "effect"
import * as PgError from "./PgError.ts"
import * as Settings from "../Settings.ts"

export interface Limits {
  /** Who the pool serves, for messages: a module, or `embedded`. */
  readonly label: string
  /** How many fibers may hold a connection at once (no more than the pool has). */
  readonly connections: number
  /** How long a fiber waits for a connection before its request is answered 503. */
  readonly acquireTimeout: Duration.Duration
  /**
   * How long a statement may run (PostgreSQL: the fiber is interrupted, which cancels the
   * statement at the server). `None` for the embedded database, whose statements cannot be
   * interrupted (see `EmbeddedPostgres`): there they run to their end, uninterruptibly.
   */
  readonly statementTimeout: Option.Option<Duration.Duration>
}

export interface Gate {
  /** A connection of the pool for the current scope, behind the gate (a `Connection.Acquirer`). */
  readonly reserve: Effect.Effect<SqlConnection.Connection, SqlError.SqlError, Scope.Scope>
  /**
   * How long every connection has been held with none handed out or given back since: zero
   * while a connection is free or turns change hands. Liveness reads it (`Health.ts`).
   */
  readonly stalledFor: Effect.Effect<Duration.Duration>
}

/**
 * The defect of a database that could not serve in time. It is an `RpcClientError` on purpose:
 * to its callers, in process or remote, a module that cannot reach its data is unavailable,
 * exactly as one that cannot be reached, and the gateway answers both with the same 503 problem
 * and `Retry-After` (a caller may retry).
 */
export const unavailable = (label: string, detail: string) =>
  new RpcClientError.RpcClientError({ reason: "Unknown", message: `${label}: the database ${detail}` })

/**
 * Runs `effect` again while it dies of `unavailable` (a database busy for a moment, as the
 * embedded one is at start while every module migrates), waiting longer each time, for at most
 * `within`: for work a process does once at start, which would otherwise stop it.
 */
export const retryWhileUnavailable = <A, E, R>(effect: Effect.Effect<A, E, R>, within: Duration.DurationInput = "1 minute") =>
  effect.pipe(
    Effect.sandbox,
    Effect.retry({
      schedule: Schedule.exponential("200 millis").pipe(Schedule.either(Schedule.spaced("2 seconds")), Schedule.upTo(within)),
      while: (cause) => Option.exists(Cause.dieOption(cause), (defect) => defect instanceof RpcClientError.RpcClientError)
    }),
    Effect.unsandbox
  )

/**
 * `TESSERA_DB_ACQUIRE_TIMEOUT` (default 15 seconds): how long a statement waits for a connection;
 * `TESSERA_DB_STATEMENT_TIMEOUT` (default 10 seconds, PostgreSQL only): how long it may run.
 */
export const settings = Config.all({
  acquireTimeout: Settings.dbAcquireTimeout.config,
  statementTimeout: Settings.dbStatementTimeout.config
})

/** PostgreSQL's `query_canceled`: the server's `statement_timeout` fired. */
const QUERY_CANCELED = "57014"

/**
 * How long a statement that follows an interrupted one on the same connection is waited for: a
 * live server answers it as soon as the interrupted statement is cancelled, in milliseconds.
 */
const AFTER_INTERRUPTION = Duration.seconds(2)

export const make = (base: SqlClient.SqlClient, limits: Limits): Effect.Effect<Gate> =>
  Effect.gen(function*() {
    const turns = yield* Effect.makeSemaphore(limits.connections)
    let held = 0
    let lastChange = yield* Clock.currentTimeMillis
    const change = (delta: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          held += delta
          lastChange = now
        }))

    const waitedTooLong = Effect.die(unavailable(
      limits.label,
      `had no free connection within ${Duration.format(limits.acquireTimeout)}`
    ))
    // The timeout runs the wait in a fiber of its own: a turn taken as the timer fires is still
    // registered in the request's scope (acquireRelease), so it is given back even then.
    const turn = Effect.timeoutOption(
      Effect.acquireRelease(
        // Waiting is interruptible (also inside `withTransaction`, which acquires
        // uninterruptibly): a waiter that leaves holds nothing.
        Effect.zipRight(Effect.interruptible(turns.take(1)), change(1)),
        () => Effect.zipRight(turns.release(1), change(-1))
      ),
      limits.acquireTimeout
    ).pipe(Effect.flatMap(Option.match({ onNone: () => waitedTooLong, onSome: () => Effect.void })))

    const connect = Effect.uninterruptible(base.reserve).pipe(
      Effect.catchAll((error) => Effect.die(unavailable(limits.label, `cannot be reached: ${error.message}`)))
    )

    /**
     * `statement`, timed out; `silent` is told when the server did not answer it at all. With
     * `afterInterruption`, the statement follows one that was interrupted on the same connection
     * (the ROLLBACK of a request cut short): its answer is waited for AFTER_INTERRUPTION at most.
     */
    const timed = <A>(
      statement: Effect.Effect<A, SqlError.SqlError>,
      silent: () => void,
      afterInterruption: boolean
    ): Effect.Effect<A, SqlError.SqlError> =>
      Option.match(limits.statementTimeout, {
        onNone: () => Effect.uninterruptible(statement),
        onSome: (timeout) => {
          const waited = afterInterruption ? Duration.min(AFTER_INTERRUPTION, timeout) : Duration.sum(timeout, Duration.millis(500))
          // Interruptible, so that the timeout holds inside uninterruptible regions too: a
          // transaction's COMMIT or ROLLBACK runs in one, and on a connection cut off without a
          // word (a network partition, a server gone without a reset) it would wait for an answer
          // that never comes, holding its fiber, its turn and, at shutdown, the process. The
          // timeout runs the statement in a fiber of its own, which only the timeout interrupts:
          // an interruption pending on the caller (the ROLLBACK of an interrupted request) does
          // not reach it. A statement cut short leaves its outcome unknown, as a lost connection does.
          return Effect.interruptible(statement).pipe(
            Effect.catchIf(
              (error) => PgError.code(error) === QUERY_CANCELED,
              () => Effect.die(unavailable(limits.label, `cancelled a statement that ran over ${Duration.format(timeout)}`))
            ),
            // The server's own statement_timeout (set on each connection) normally fires first;
            // this one, a little later, covers a server that does not answer at all.
            Effect.timeoutOption(waited),
            Effect.flatMap(Option.match({
              onNone: () =>
                Effect.zipRight(
                  Effect.sync(silent),
                  Effect.die(unavailable(limits.label, `did not answer a statement within ${Duration.format(waited)}`))
                ),
              onSome: Effect.succeed
            }))
          )
        }
      })

    /**
     * A reserved connection whose every statement is timed. Once the server has not answered one
     * at all (its own statement_timeout would have), the connection is taken for dead: what
     * follows on it fails at once instead of waiting out the timeout again, above all the
     * ROLLBACK of the transaction that statement was in (a process stopping on connections that
     * died without a word waited for each in turn). After a statement was interrupted (a request
     * cut short at shutdown, a client gone), the next one is waited for briefly: on a live
     * connection it is answered at once (the interrupted one cancelled), on a dead one never.
     */
    const wrap = (conn: SqlConnection.Connection): SqlConnection.Connection => {
      let dead = false
      let interrupted = false
      const died = () => {
        dead = true
      }
      const guarded = <A>(statement: Effect.Effect<A, SqlError.SqlError>) =>
        Effect.suspend(() =>
          dead
            ? Effect.die(unavailable(limits.label, "lost a connection that stopped answering"))
            : timed(statement, died, interrupted).pipe(
              Effect.onExit((exit) =>
                Effect.sync(() => {
                  interrupted = Exit.isInterrupted(exit)
                })
              )
            )
        )
      return {
        execute: (sql, params, transform) => guarded(conn.execute(sql, params, transform)),
        executeRaw: (sql, params) => guarded(conn.executeRaw(sql, params)),
        executeValues: (sql, params) => guarded(conn.executeValues(sql, params)),
        executeUnprepared: (sql, params, transform) => guarded(conn.executeUnprepared(sql, params, transform)),
        // A stream is read at the reader's pace: no statement timeout applies to it.
        executeStream: (sql, params, transform) => conn.executeStream(sql, params, transform)
      }
    }

    const stalledFor = Effect.map(Clock.currentTimeMillis, (now) =>
      held < limits.connections ? Duration.zero : Duration.millis(now - lastChange))

    return {
      reserve: Effect.zipRight(turn, Effect.map(connect, wrap)),
      stalledFor
    } satisfies Gate
  })
