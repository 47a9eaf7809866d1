/**
 * Payments' use cases. A payment is recorded `pending` before its charge is sent; the provider's
 * answer resolves it (`charged`, `declined`). The charge carries an idempotency key derived from
 * the payment id, so the provider makes at most one charge per payment however often it is sent.
 *
 * When the answer is lost (the connection dropped, no answer in time) the payment stays pending
 * and is resolved by asking the provider for the charge made under that key, never by charging
 * under another. A pending payment found again (a retried `charge`, a `refund`) is resolved the
 * same way first; only when the provider has no charge under its key is the charge sent (again
 * under the same key: if the first request is still on its way, the provider answers both alike).
 * When the provider cannot be asked, the payment stays pending and the call fails with
 * PaymentUnavailable: calling again later resolves it. A refund of a pending payment the provider
 * has no charge for voids it (no charge is sent for it after), but only once no charge sent
 * before can still reach the provider: a charge request outlives the call that gave up on it.
 */
import { Duration, Effect, Option } from "effect"
import type { CallError } from "../../../runtime/transport/CallError.ts"
import {
  type ChargeRequest,
  Payment,
  PaymentDeclined,
  type PaymentId,
  PaymentNotFound,
  PaymentUnavailable
} from "../PaymentsApi.ts"
import { PaymentsRepo, type PaymentRow } from "./PaymentsRepo.ts"
import { type ChargeOutcome, Provider } from "./Provider.ts"

/** The provider's idempotency key of a payment's charge, and of its refund. */
export const chargeKey = (paymentId: string) => `tessera-charge-${paymentId}`
export const refundKey = (paymentId: string) => `tessera-refund-${paymentId}`

/** A resolved payment as the contract shows it (a pending one has no outcome to show: a bug). */
export const toPayment = (row: PaymentRow): Payment => {
  if (row.status === "pending") throw new Error(`payment ${row.paymentId} is pending: it has no outcome to show`)
  return new Payment({
    paymentId: row.paymentId as PaymentId,
    orderId: row.orderId,
    customerId: row.customerId,
    status: row.status,
    amountCents: row.amountCents,
    currency: row.currency,
    ...(row.providerChargeId === null ? {} : { providerChargeId: row.providerChargeId }),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt
  })
}

const unavailable = (paymentId: string) => (error: CallError) =>
  Effect.fail(
    new PaymentUnavailable({
      paymentId,
      reason: error.reason === "BreakerOpen"
        ? "the payment provider is failing; its circuit breaker is open"
        : error.kind === "NotSent"
        ? "the payment provider could not be reached"
        : "the payment provider's answer was lost, and it could not be asked for it"
    })
  )

export class Payments extends Effect.Service<Payments>()("payments/Payments", {
  effect: Effect.gen(function*() {
    const repo = yield* PaymentsRepo
    const provider = yield* Provider

    /** Records the provider's outcome of a pending payment. */
    const record = (paymentId: PaymentId, outcome: ChargeOutcome) =>
      repo.resolve(paymentId, outcome._tag === "Charged" ? "charged" : "declined", outcome.chargeId)

    /** What a resolved row answers to `charge`. */
    const answer = (row: PaymentRow): Effect.Effect<Payment, PaymentDeclined> =>
      row.status === "declined"
        ? Effect.fail(new PaymentDeclined({ paymentId: row.paymentId, reason: "declined by the payment provider" }))
        : Effect.succeed(toPayment(row))

    /**
     * Resolves a pending payment: the provider's charge under its key if there is one, else (with
     * `send`) the charge sent under that key. `None`: still unknown.
     */
    const settle = (row: PaymentRow, send: Option.Option<ChargeRequest>) =>
      Effect.gen(function*() {
        const paymentId = row.paymentId as PaymentId
        const found = yield* provider.lookup(row.providerKey)
        if (Option.isSome(found)) return yield* record(paymentId, found.value)
        if (Option.isNone(send)) return row
        return yield* sendCharge(row, send.value)
      })

    /**
     * Sends the payment's charge (as first recorded), unless it was voided meanwhile (then the
     * row as it is); an answer lost on the way is asked for by key.
     */
    const sendCharge = (pending: PaymentRow, request: ChargeRequest) =>
      Effect.flatMap(repo.sending(pending.paymentId as PaymentId), (sending) =>
        Option.isNone(sending)
          ? Effect.map(repo.find(pending.paymentId as PaymentId), Option.getOrThrow)
          : send(sending.value, request))

    const send = (row: PaymentRow, request: ChargeRequest) =>
      provider.charge(row.providerKey, {
        amountCents: row.amountCents,
        currency: row.currency,
        token: request.token,
        reference: row.paymentId
      }).pipe(
        Effect.tapError((error) => error.kind === "NotSent" ? repo.notSent(row.paymentId as PaymentId) : Effect.void),
        Effect.flatMap((outcome) => record(row.paymentId as PaymentId, outcome)),
        Effect.catchIf(
          (error) => error.kind !== "NotSent",
          (lost) =>
            Effect.logWarning(`payment ${row.paymentId}: the charge's answer was lost (${lost.message}); asking the provider by its key`).pipe(
              Effect.zipRight(provider.lookup(row.providerKey)),
              Effect.flatMap(Option.match({
                onNone: () => Effect.fail(lost),
                onSome: (outcome) => record(row.paymentId as PaymentId, outcome)
              }))
            )
        )
      )

    const charge = Effect.fn("Payments.charge")(function*(request: ChargeRequest) {
      const existing = yield* repo.find(request.paymentId)
      const row = Option.isSome(existing)
        ? existing.value
        : yield* repo.insertPending({
          paymentId: request.paymentId,
          orderId: request.orderId,
          customerId: request.customerId,
          amountCents: request.amountCents,
          currency: request.currency,
          providerKey: chargeKey(request.paymentId)
        })
      if (row.status !== "pending") return yield* answer(row)
      // A row of ours that was pending before this call may have been charged: ask first.
      const resolved = yield* (Option.isSome(existing) ? settle(row, Option.some(request)) : sendCharge(row, request)).pipe(
        Effect.catchTag("CallError", unavailable(request.paymentId))
      )
      if (resolved.status === "pending") {
        return yield* new PaymentUnavailable({ paymentId: request.paymentId, reason: "the outcome of the charge is not known yet" })
      }
      return yield* answer(resolved)
    })

    const refund = Effect.fn("Payments.refund")(function*(paymentId: PaymentId) {
      const found = yield* repo.find(paymentId)
      if (Option.isNone(found)) return yield* new PaymentNotFound({ id: paymentId })
      let row = found.value
      const quiet = 2 * Duration.toSeconds(provider.chargeDeadline)
      // A charge that never left (the provider's breaker open, say): voided at once, unasked.
      if (row.status === "pending" && row.sendsInDoubt === 0) row = yield* repo.voidQuiet(paymentId, quiet)
      if (row.status === "pending") {
        row = yield* settle(row, Option.none()).pipe(Effect.catchTag("CallError", unavailable(paymentId)))
        // The provider has no charge under its key: voided, so that none is sent for it any more,
        // once no charge sent before can still be on its way (twice the deadline of one send).
        if (row.status === "pending") row = yield* repo.voidQuiet(paymentId, quiet)
        if (row.status === "pending") {
          return yield* new PaymentUnavailable({ paymentId, reason: "a charge of this payment may still reach the provider; try again later" })
        }
      }
      if (row.status !== "charged") return toPayment(row)
      const refundId = yield* provider.refund(refundKey(paymentId), row.providerChargeId!).pipe(
        Effect.catchTag("CallError", unavailable(paymentId))
      )
      return toPayment(yield* repo.refunded(paymentId, refundId))
    })

    const byOrder = Effect.fn("Payments.byOrder")(function*(orderId: string) {
      const found = yield* repo.latestOfOrder(orderId)
      return Option.isSome(found) ? toPayment(found.value) : yield* new PaymentNotFound({ id: orderId })
    })

    return { charge, refund, byOrder, providerUrl: provider.url }
  })
}) {}
