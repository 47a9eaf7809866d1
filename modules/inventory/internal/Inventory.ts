/**
 * Inventory's use cases: each one a single transaction over the inventory schema. A reservation
 * that takes a product's available units below `TESSERA_INVENTORY_LOW_STOCK` publishes StockLow
 * in its transaction.
 */
import { Effect, Either, Option } from "effect"
import { CatalogClient, type ProductId } from "../../catalog/index.ts"
import { Outbox } from "../../../runtime/messaging/Outbox.ts"
import * as Setting from "../../../runtime/Setting.ts"
import {
  IdempotencyKeyReused,
  Reservation,
  ReservationConflict,
  type ReservationId,
  type ReservationLine,
  ReservationNotFound,
  Stock,
  StockInsufficient,
  StockLimitExceeded,
  MAX_UNITS
} from "../InventoryApi.ts"
import { StockLow } from "../InventoryEvents.ts"
import { InventoryRepo } from "./InventoryRepo.ts"
import * as ReservationLines from "./ReservationLines.ts"

/** The available units below which a product is low on stock (StockLow). */
export const lowStock = Setting.integer({
  name: "TESSERA_INVENTORY_LOW_STOCK",
  description: "a reservation that takes a product's available units below this publishes StockLow (once per crossing); 0: never",
  default: "5",
  min: 0,
  max: 2_147_483_647
})

/** Whether taking `quantity` units left `available`, and so crossed below `threshold` just now. */
export const crossedBelow = (threshold: number, available: number, quantity: number) =>
  available < threshold && available + quantity >= threshold

export class Inventory extends Effect.Service<Inventory>()("inventory/Inventory", {
  effect: Effect.gen(function*() {
    const repo = yield* InventoryRepo
    const catalog = yield* CatalogClient
    const outbox = yield* Outbox
    const threshold = yield* Effect.orDie(lowStock.config)

    /** Fails with ProductNotFound unless the catalog knows the product. */
    const requireProduct = (productId: ProductId) =>
      catalog.get({ id: productId }).pipe(
        Effect.asVoid,
        Effect.catchTag("CallError", Effect.die)
      )

    const added = (productId: ProductId, quantity: number) =>
      Effect.flatMap(repo.restock(productId, quantity), (levels) =>
        Option.match(levels, {
          onNone: () => Effect.fail(new StockLimitExceeded({ productId, limit: MAX_UNITS })),
          onSome: (l) => Effect.succeed(new Stock({ productId, ...l }))
        }))

    /**
     * Adds units. With an idempotency key, at most once per key: the same key again answers the
     * stock the first restock answered (a refused one is not recorded, so it is tried afresh).
     */
    const restock = Effect.fn("Inventory.restock")(function*(productId: ProductId, quantity: number, key: Option.Option<string>) {
      yield* requireProduct(productId)
      if (Option.isNone(key)) return yield* added(productId, quantity)
      const idempotencyKey = key.value
      return yield* repo.transaction(Effect.gen(function*() {
        if (yield* repo.claimRestockKey(idempotencyKey, productId, quantity)) {
          const stock = yield* added(productId, quantity)
          yield* repo.recordRestockKey(idempotencyKey, stock)
          return stock
        }
        const prior = Option.getOrThrow(yield* repo.restockByKey(idempotencyKey))
        if (prior.productId !== productId || prior.quantity !== quantity || prior.available === null || prior.reserved === null) {
          return yield* new IdempotencyKeyReused({ key: idempotencyKey })
        }
        return new Stock({ productId, available: prior.available, reserved: prior.reserved })
      }))
    })

    const get = Effect.fn("Inventory.get")(function*(productId: ProductId) {
      const levels = yield* repo.levels(productId)
      if (Option.isSome(levels)) return new Stock({ productId, ...levels.value })
      yield* requireProduct(productId)
      return new Stock({ productId, available: 0, reserved: 0 })
    })

    const insufficient = (line: ReservationLine) =>
      repo.levels(line.productId).pipe(
        Effect.flatMap((levels) =>
          Effect.fail(
            new StockInsufficient({
              productId: line.productId,
              requested: line.quantity,
              available: Option.match(levels, { onNone: () => 0, onSome: (l) => l.available })
            })
          )
        )
      )

    const existing = (reservationId: ReservationId) =>
      Effect.gen(function*() {
        const status = yield* repo.lockReservation(reservationId)
        return Option.map(status, (status) => ({ status, lines: repo.lines(reservationId) }))
      })

    const reserve = Effect.fn("Inventory.reserve")(function*(
      reservationId: ReservationId,
      requested: ReadonlyArray<ReservationLine>
    ) {
      const normalized = ReservationLines.normalize(requested)
      if (Either.isLeft(normalized)) return yield* insufficient(normalized.left)
      const lines = normalized.right
      return yield* repo.transaction(Effect.gen(function*() {
        if (!(yield* repo.insertReservation(reservationId, "held"))) {
          // The id is taken: the same request again is answered as before, anything else refused.
          const found = yield* existing(reservationId)
          const prior = Option.getOrThrow(found)
          const priorLines = yield* prior.lines
          if (prior.status !== "released" && ReservationLines.same(priorLines, lines)) {
            return new Reservation({ reservationId, status: prior.status, lines: priorLines })
          }
          return yield* new ReservationConflict({
            reservationId,
            status: prior.status,
            reason: prior.status === "released"
              ? "it was released and cannot be reserved again"
              : "it was reserved with other lines"
          })
        }
        for (const line of lines) {
          const held = yield* repo.hold(line.productId, line.quantity)
          if (Option.isNone(held)) return yield* insufficient(line)
          if (crossedBelow(threshold, held.value, line.quantity)) {
            yield* outbox.publish(StockLow, { productId: line.productId, available: held.value, threshold })
          }
        }
        yield* repo.insertLines(reservationId, lines)
        return new Reservation({ reservationId, status: "held", lines })
      }))
    })

    const release = Effect.fn("Inventory.release")(function*(reservationId: ReservationId) {
      return yield* repo.transaction(Effect.gen(function*() {
        // Releasing an unknown id leaves a tombstone, so a reserve arriving late is refused.
        if (yield* repo.insertReservation(reservationId, "released")) {
          return new Reservation({ reservationId, status: "released", lines: [] })
        }
        const prior = Option.getOrThrow(yield* existing(reservationId))
        const lines = yield* prior.lines
        if (prior.status === "committed") {
          return yield* new ReservationConflict({ reservationId, status: prior.status, reason: "its stock has left" })
        }
        if (prior.status === "held") {
          for (const line of lines) yield* repo.unhold(line.productId, line.quantity)
          yield* repo.setStatus(reservationId, "released")
        }
        return new Reservation({ reservationId, status: "released", lines })
      }))
    })

    const commit = Effect.fn("Inventory.commit")(function*(reservationId: ReservationId) {
      return yield* repo.transaction(Effect.gen(function*() {
        const found = yield* existing(reservationId)
        if (Option.isNone(found)) return yield* new ReservationNotFound({ reservationId })
        const prior = found.value
        const lines = yield* prior.lines
        if (prior.status === "released") {
          return yield* new ReservationConflict({ reservationId, status: prior.status, reason: "it was released" })
        }
        if (prior.status === "held") {
          for (const line of lines) yield* repo.remove(line.productId, line.quantity)
          yield* repo.setStatus(reservationId, "committed")
        }
        return new Reservation({ reservationId, status: "committed", lines })
      }))
    })

    return { restock, get, reserve, release, commit } as const
  }),
  dependencies: [InventoryRepo.Default]
}) {}
