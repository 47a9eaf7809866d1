/**
 * Every placed order gets its saga: `place` starts it right after the order's commit, and a
 * process that died in between leaves the order PENDING with no saga. This sweep, run by every
 * process hosting orders, starts PlaceOrder again for orders PENDING longer than
 * `TESSERA_ORDERS_RESUME_AFTER`; the execution id is the order's, so for an order whose saga is
 * running or done the start is the same execution and changes nothing.
 */
import { Duration, Effect, Layer, Schedule } from "effect"
import * as Setting from "../../../runtime/Setting.ts"
import { PlaceOrder } from "./OrderSaga.ts"
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
  const sweep = Effect.gen(function*() {
    // Past every order: older ones still PENDING (their sagas running, or stuck in a compensation
    // an operator must see to) must not hide the newer ones behind them.
    let position: StalePosition | undefined
    let seen = 0
    while (true) {
      const stale = yield* repo.stalePending(Duration.toSeconds(after), BATCH, position)
      for (const { id } of stale) yield* PlaceOrder.execute({ orderId: id }, { discard: true })
      seen += stale.length
      if (stale.length < BATCH) break
      position = stale[stale.length - 1]!
    }
    if (seen > 0) yield* Effect.logInfo("orders: made sure stale pending orders have their saga").pipe(Effect.annotateLogs({ orders: seen }))
  }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("orders: the pending-orders sweep failed; it runs again", cause)))
  yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(after)).pipe(Effect.delay(after)))
}))
