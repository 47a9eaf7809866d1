/**
 * Every placed order gets its saga, and every cancel asked for its own: `place` and `cancel`
 * start them right after their commit, and a process that died in between leaves the order
 * PENDING with no saga, or its cancel asked for with none. This sweep, run by every process
 * hosting orders, starts PlaceOrder again for orders PENDING longer than
 * `TESSERA_ORDERS_RESUME_AFTER`, and CancelOrder for cancels asked for longer ago than that and
 * not done; the execution ids are the order's, so for a saga running or done the start is the
 * same execution and changes nothing.
 */
import { Duration, Effect, Layer, Schedule } from "effect"
import * as Setting from "../../../runtime/Setting.ts"
import { CancelOrder, PlaceOrder } from "./OrderSaga.ts"
import { OrdersRepo, type StalePosition } from "./OrdersRepo.ts"

export const resumeAfter = Setting.duration({
  name: "TESSERA_ORDERS_RESUME_AFTER",
  description: "how long an order may stay PENDING before orders makes sure its saga was started (and how often it looks)",
  default: "30 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

/** Orders read per batch of a sweep; a sweep walks every stale pending order, batch by batch. */
const BATCH = 100

export const StartedSagas = Layer.scopedDiscard(Effect.gen(function*() {
  const repo = yield* OrdersRepo
  const after = yield* Effect.orDie(resumeAfter.config)
  /**
   * Starts `start` for every order `stale` finds, batch by batch: past every one, so that older
   * ones still waiting (their sagas running, or stuck in a compensation an operator must see to)
   * do not hide the newer ones behind them. How many it saw.
   */
  const walk = <R>(
    stale: (seconds: number, limit: number, after?: StalePosition) => Effect.Effect<ReadonlyArray<StalePosition>>,
    start: (orderId: string) => Effect.Effect<unknown, never, R>
  ) =>
    Effect.gen(function*() {
      let position: StalePosition | undefined
      let seen = 0
      while (true) {
        const found = yield* stale(Duration.toSeconds(after), BATCH, position)
        for (const { id } of found) yield* start(id)
        seen += found.length
        if (found.length < BATCH) return seen
        position = found[found.length - 1]!
      }
    })
  const sweep = Effect.gen(function*() {
    const placed = yield* walk(repo.stalePending, (orderId) => PlaceOrder.execute({ orderId }, { discard: true }))
    if (placed > 0) yield* Effect.logInfo("orders: made sure stale pending orders have their saga").pipe(Effect.annotateLogs({ orders: placed }))
    const cancels = yield* walk(repo.staleCancels, (orderId) => CancelOrder.execute({ orderId }, { discard: true }))
    if (cancels > 0) yield* Effect.logInfo("orders: made sure cancels asked for have their saga").pipe(Effect.annotateLogs({ orders: cancels }))
  }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("orders: the sweep of unstarted sagas failed; it runs again", cause)))
  yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(after)).pipe(Effect.delay(after)))
}))
