/**
 * Shipping's use cases: each one statement (and a read) over the shipping schema; a create that
 * makes a shipment publishes ShipmentCreated in the transaction of its statement.
 */
import { SqlClient, SqlError } from "@effect/sql"
import { Effect, Option } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { Outbox } from "../../../runtime/messaging/Outbox.ts"
import type { Caller } from "../../../runtime/security/Caller.ts"
import { ShipmentAlreadyShipped, ShipmentCancelled, ShipmentNotFound, ShipmentOnHold, type ShippingAddress } from "../ShippingApi.ts"
import { ShipmentCreated } from "../ShippingEvents.ts"
import { ShipmentsRepo, TRACKING_NUMBER_KEY } from "./ShipmentsRepo.ts"
import * as TrackingNumber from "./TrackingNumber.ts"

/** The module whose saga creates, releases and cancels shipments, and may read them. */
export const ORDERS = "orders"

export class Shipping extends Effect.Service<Shipping>()("shipping/Shipping", {
  effect: Effect.gen(function*() {
    const repo = yield* ShipmentsRepo
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox

    /** The order's shipment; ShipmentNotFound when it has none (a cancellation alone is none). */
    const existing = (orderId: string) =>
      Effect.flatMap(repo.find(orderId), (found) =>
        Option.match(Option.flatMap(found, (row) => row.shipment), {
          onNone: () => Effect.fail(new ShipmentNotFound({ orderId })),
          onSome: Effect.succeed
        }))

    const create = Effect.fn("Shipping.create")(function*(orderId: string, customerId: string, address: ShippingAddress) {
      // Each attempt its own transaction: a repeated tracking number aborts it, and the next draws again.
      const insertAndPublish = sql.withTransaction(Effect.gen(function*() {
        const inserted = yield* repo.insert(orderId, customerId, address, TrackingNumber.make())
        const created = Option.flatMap(inserted, (row) => row.status === "on_hold" ? row.shipment : Option.none())
        // Only a live shipment made now: not the cancelled one that fills in a cancellation that came first.
        if (Option.isSome(created)) {
          const { trackingNumber } = created.value
          yield* outbox.publish(ShipmentCreated, { orderId, customerId, trackingNumber })
        }
        return inserted
      }))
      const inserted = yield* insertAndPublish.pipe(
        Effect.retry({
          times: 3,
          while: (error) => error instanceof SqlError.SqlError && PgError.isUniqueViolation(error, TRACKING_NUMBER_KEY)
        }),
        PgError.orDie
      )
      const shipment = Option.flatMap(inserted, (row) => row.shipment)
      if (Option.isSome(shipment)) return shipment.value
      // The order has its shipment already: the same call again.
      return yield* Effect.orDie(existing(orderId))
    })

    const cancel = Effect.fn("Shipping.cancel")(function*(orderId: string) {
      const cancelled = yield* repo.cancel(orderId)
      if (Option.isSome(cancelled)) {
        // Cancelled now: the shipment, or, for an order that had none, the record that it has none.
        return yield* Option.match(cancelled.value.shipment, {
          onNone: () => Effect.fail(new ShipmentNotFound({ orderId })),
          onSome: Effect.succeed
        })
      }
      const shipment = yield* existing(orderId)
      if (shipment.status === "shipped") return yield* new ShipmentAlreadyShipped({ orderId })
      return shipment
    })

    /** Releases a shipment on hold; a ready or shipped one answers as it is. */
    const release = Effect.fn("Shipping.release")(function*(orderId: string) {
      const released = Option.flatMap(yield* repo.release(orderId), (row) => row.shipment)
      if (Option.isSome(released)) return released.value
      const shipment = yield* existing(orderId)
      if (shipment.status === "cancelled") return yield* new ShipmentCancelled({ orderId })
      return shipment
    })

    /** Ships a ready shipment; a shipped one answers as it is, one on hold or cancelled is refused. */
    const markShipped = Effect.fn("Shipping.markShipped")(function*(orderId: string) {
      const shipped = Option.flatMap(yield* repo.ship(orderId), (row) => row.shipment)
      if (Option.isSome(shipped)) return shipped.value
      const shipment = yield* existing(orderId)
      if (shipment.status === "cancelled") return yield* new ShipmentCancelled({ orderId })
      if (shipment.status === "on_hold") return yield* new ShipmentOnHold({ orderId })
      return shipment
    })

    /** For an admin, the orders module, or the shipment's customer; anyone else: not found. */
    const byOrder = Effect.fn("Shipping.byOrder")(function*(caller: Caller, orderId: string) {
      const shipment = yield* existing(orderId)
      const allowed = caller.isAdmin || caller.isService(ORDERS) ||
        (caller.kind === "user" && caller.id === shipment.customerId)
      if (!allowed) return yield* new ShipmentNotFound({ orderId })
      return shipment
    })

    return { create, cancel, release, markShipped, byOrder } as const
  }),
  dependencies: [ShipmentsRepo.Default]
}) {}
