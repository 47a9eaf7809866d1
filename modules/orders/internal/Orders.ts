/** Orders' use cases. Callers are resolved (and admins checked) by the handlers. */
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { CatalogClient, type Currency } from "../../catalog/index.ts"
import { PaymentsClient } from "../../payments/index.ts"
import { ShippingClient } from "../../shipping/index.ts"
import type { Caller } from "../../../runtime/security/Caller.ts"
import * as Text from "../../../runtime/schema/Text.ts"
import {
  IdempotencyKeyReused,
  type NewOrder,
  OrderCursorInvalid,
  OrderId,
  type OrderItem,
  OrderItemRefused,
  OrderNotCancellable,
  OrderNotFound,
  OrderPage,
  type OrderQuery,
  type SagaQuery
} from "../OrdersApi.ts"
import * as Saga from "../../../runtime/saga/Saga.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"
import { CancelOrder, PlaceOrder } from "./OrderSaga.ts"
import { type OrderRow, OrdersRepo, toOrder } from "./OrdersRepo.ts"

export const DEFAULT_PAGE_SIZE = 20
/** The largest total an order may have, in the currency's minor unit (payments' amounts are 32-bit). */
export const MAX_TOTAL_CENTS = 2_147_483_647

/** What the idempotency key is bound to: the request's content, in a fixed order. */
const requestHash = (input: NewOrder) =>
  createHash("sha256").update(JSON.stringify([
    input.items.map((item) => [item.productId, item.quantity]),
    [
      input.shippingAddress.name,
      input.shippingAddress.line1,
      input.shippingAddress.city,
      input.shippingAddress.postalCode,
      input.shippingAddress.country
    ],
    input.paymentToken
  ])).digest("base64url")

/**
 * How long `place` and `cancel` wait for their saga's start before they answer (Saga.starter).
 * Should a start never happen (the process dies), the sweep (StartedSagas.ts) starts it later.
 */
const SAGA_START_WAIT = Duration.seconds(2)

export class Orders extends Effect.Service<Orders>()("orders/Orders", {
  scoped: Effect.gen(function*() {
    const repo = yield* OrdersRepo
    const sql = yield* SqlClient.SqlClient
    const catalog = yield* CatalogClient
    const payments = yield* PaymentsClient
    const shipping = yield* ShippingClient

    const start = yield* Saga.starter(SAGA_START_WAIT)

    /** Starts the order's saga (a second start of the same order is the same execution). */
    const startSaga = (orderId: string) =>
      start(PlaceOrder.execute({ orderId }, { discard: true })).pipe(Effect.annotateLogs({ orderId }))

    /** Prices the items from the catalog: every product known, all in one currency. */
    const price = (items: NewOrder["items"]) =>
      Effect.gen(function*() {
        // One line per product: a second line of it would be its own reservation and return line.
        const seen = new Set<string>()
        for (const [index, item] of items.entries()) {
          if (seen.has(item.productId)) {
            return yield* new OrderItemRefused({
              field: `items.${index}.productId`,
              reason: "this product is in an earlier line already: give each product one line with its whole quantity"
            })
          }
          seen.add(item.productId)
        }
        const products = yield* Effect.forEach(
          items,
          (item, index) =>
            catalog.get({ id: item.productId }).pipe(
              Effect.catchTags({
                ProductNotFound: () =>
                  Effect.fail(new OrderItemRefused({ field: `items.${index}.productId`, reason: "no product has this id" })),
                // Catalog unreachable: the caller gets 503 and may repeat the request with its key.
                CallError: Effect.die
              })
            ),
          { concurrency: 8 }
        )
        const currency = products[0]!.currency
        const lines: Array<OrderItem> = []
        let total = 0
        for (const [index, product] of products.entries()) {
          if (product.currency !== currency) {
            return yield* new OrderItemRefused({
              field: `items.${index}.productId`,
              reason: `this product is priced in ${product.currency}, the order's first item in ${currency}`
            })
          }
          const quantity = items[index]!.quantity
          lines.push({ productId: product.id, quantity, unitPriceCents: product.priceCents })
          total += quantity * product.priceCents
        }
        if (total > MAX_TOTAL_CENTS) {
          return yield* new OrderItemRefused({ field: "items", reason: `the order's total may be at most ${MAX_TOTAL_CENTS} cents` })
        }
        return { lines, total, currency: currency as Currency }
      })

    /** The order a key already placed: answered again (its saga started, if a crash left it unstarted), unless the request differs. */
    const replay = (row: OrderRow, hash: string, key: string) =>
      row.requestHash !== hash
        ? Effect.fail(new IdempotencyKeyReused({ key: Text.quote(key) }))
        : Effect.as(row.status === "PENDING" ? startSaga(row.id) : Effect.void, toOrder(row))

    const place = Effect.fn("Orders.place")(function*(caller: Caller, input: NewOrder & { readonly idempotencyKey: string }) {
      const hash = requestHash(input)
      const prior = yield* repo.byKey(caller.id, input.idempotencyKey)
      if (Option.isSome(prior)) return yield* replay(prior.value, hash, input.idempotencyKey)
      const priced = yield* price(input.items)
      const id = OrderId.make(crypto.randomUUID())
      const inserted = yield* repo.insert({
        id,
        customerId: caller.id,
        idempotencyKey: input.idempotencyKey,
        requestHash: hash,
        items: priced.lines,
        totalCents: priced.total,
        currency: priced.currency,
        shippingAddress: input.shippingAddress,
        paymentToken: input.paymentToken
      })
      // Another request with the key won the insert: its order is the answer.
      const row = Option.getOrThrow(yield* (inserted ? repo.byId(id) : repo.byKey(caller.id, input.idempotencyKey)))
      return yield* replay(row, hash, input.idempotencyKey)
    })

    /** The order, if the caller may see it: its owner or an admin. */
    const visible = (caller: Caller, id: OrderId) =>
      Effect.flatMap(repo.byId(id), (row) =>
        Option.isSome(row) && (row.value.customerId === caller.id || caller.isAdmin)
          ? Effect.succeed(row.value)
          : Effect.fail(new OrderNotFound({ orderId: id })))

    const get = Effect.fn("Orders.get")(function*(caller: Caller, id: OrderId) {
      return toOrder(yield* visible(caller, id))
    })

    const decodeCursor = (cursor: string | undefined) =>
      cursor === undefined ? Effect.succeed(undefined) : Option.match(Cursor.decode(cursor), {
        onNone: () => Effect.fail(new OrderCursorInvalid({ cursor: Text.quote(cursor) })),
        onSome: Effect.succeed
      })

    const list = Effect.fn("Orders.list")(function*(caller: Caller, query: OrderQuery) {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE
      const before = yield* decodeCursor(query.cursor)
      // One row more than the page tells whether another page follows.
      const rows = yield* repo.list({
        customerId: caller.isAdmin ? undefined : caller.id,
        status: query.status,
        before,
        limit: limit + 1
      })
      const { items, nextCursor } = Cursor.page(rows, limit)
      return new OrderPage({ items: items.map(toOrder), nextCursor })
    })

    const cancel = Effect.fn("Orders.cancel")(function*(caller: Caller, id: OrderId) {
      const row = yield* visible(caller, id)
      if (row.status === "CANCELLED") return toOrder(row)
      if (row.status === "CONFIRMED") {
        const shipment = yield* shipping.byOrder({ orderId: id }).pipe(
          Effect.catchTag("CallError", Effect.die),
          Effect.catchTag("ShipmentNotFound", () => Effect.succeed(undefined))
        )
        if (shipment?.status === "shipped") {
          return yield* new OrderNotCancellable({ orderId: id, reason: "it has shipped" })
        }
      }
      const requested = Option.getOrThrow(yield* repo.requestCancel(id))
      yield* start(CancelOrder.execute({ orderId: id }, { discard: true })).pipe(Effect.annotateLogs({ orderId: id }))
      return toOrder(requested)
    })

    const payment = Effect.fn("Orders.payment")(function*(caller: Caller, id: OrderId) {
      yield* visible(caller, id)
      return yield* payments.byOrder({ orderId: id }).pipe(Effect.catchTag("CallError", Effect.die))
    })

    const shipment = Effect.fn("Orders.shipment")(function*(caller: Caller, id: OrderId) {
      yield* visible(caller, id)
      return yield* shipping.byOrder({ orderId: id }).pipe(Effect.catchTag("CallError", Effect.die))
    })

    const listSagas = Effect.fn("Orders.listSagas")(function*(query: SagaQuery) {
      return yield* Saga.list({ state: query.state, cursor: query.cursor, limit: query.limit ?? DEFAULT_PAGE_SIZE }).pipe(
        Effect.provideService(SqlClient.SqlClient, sql)
      )
    })

    return { place, get, list, cancel, payment, shipment, listSagas } as const
  }),
  dependencies: [OrdersRepo.Default]
}) {}
