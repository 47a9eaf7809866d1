/**
 * The bound on a product's units (available and reserved together at most MAX_UNITS), through
 * inventory's public client on PostgreSQL and embedded: every operation of the contract, at the
 * boundary quantities, from states at the boundary, answers a value or a declared error (never a
 * defect), keeps the bound, and leaves every held reservation releasable.
 */
import { Effect, Exit, Option, Schema } from "effect"
import { expect, it } from "vitest"
import * as TestHost from "../../runtime/testing/TestHost.ts"
import type { ProductId } from "../catalog/index.ts"
import { catalog, product } from "./CatalogStub.ts"
import {
  InventoryClient,
  InventoryRpcs,
  MAX_UNITS,
  type ReservationId,
  StockInsufficient,
  StockLimitExceeded
} from "./InventoryApi.ts"
import { InventoryModule } from "./InventoryModule.ts"

const reservation = () => `limits-${crypto.randomUUID()}` as ReservationId

/** The quantities at the edges of `Quantity` (1..MAX_UNITS) and just outside them. */
const QUANTITIES = [0, 1, MAX_UNITS - 1, MAX_UNITS, MAX_UNITS + 1] as const
const valid = (quantity: number) => quantity >= 1 && quantity <= MAX_UNITS

/** A product's levels, and the reservations holding some of its units. */
interface State {
  readonly name: string
  readonly available: number
  /** The quantities held, one reservation each. */
  readonly held: ReadonlyArray<number>
}

/** Starting points at and near the bound. */
const STATES: ReadonlyArray<State> = [
  { name: "never restocked", available: 0, held: [] },
  { name: "one unit free", available: 1, held: [] },
  { name: "one below the bound, free", available: MAX_UNITS - 1, held: [] },
  { name: "at the bound, free", available: MAX_UNITS, held: [] },
  { name: "at the bound, all held", available: 0, held: [MAX_UNITS] },
  { name: "at the bound, one unit held", available: MAX_UNITS - 1, held: [1] },
  { name: "at the bound, all but one held", available: 1, held: [MAX_UNITS - 1] },
  { name: "one below the bound, all held", available: 0, held: [MAX_UNITS - 1] }
]

type Operation = keyof InventoryClient["Type"]

TestHost.describeOnDatabases(
  "inventory stock limits",
  (database) => TestHost.layer([InventoryModule], database, [catalog]),
  (anyone) => {
    const run = TestHost.asAdmin(anyone)
    const inventory = <A, E>(f: (client: InventoryClient["Type"]) => Effect.Effect<A, E>) =>
      run(Effect.flatMap(InventoryClient, f))
    const exit = <A, E>(f: (client: InventoryClient["Type"]) => Effect.Effect<A, E>) =>
      run(Effect.exit(Effect.flatMap(InventoryClient, f)))
    const levels = async (productId: ProductId) => {
      const stock = await inventory((c) => c.get({ productId }))
      return { available: stock.available, reserved: stock.reserved }
    }

    /** A fresh product in `state`: restocked, then held by one reservation per held quantity. */
    const arrange = async (state: State) => {
      const productId = product()
      const total = state.available + state.held.reduce((a, b) => a + b, 0)
      if (total > 0) await inventory((c) => c.restock({ productId, quantity: total }))
      const held: Array<ReservationId> = []
      for (const quantity of state.held) {
        const reservationId = reservation()
        await inventory((c) => c.reserve({ reservationId, lines: [{ productId, quantity }] }))
        held.push(reservationId)
      }
      expect(await levels(productId)).toEqual({ available: state.available, reserved: total - state.available })
      return { productId, held }
    }

    /** The bound holds, and every reservation still held can be released, returning its units. */
    const settle = async (productId: ProductId, held: ReadonlyArray<ReservationId>) => {
      const after = await levels(productId)
      expect(after.available).toBeGreaterThanOrEqual(0)
      expect(after.reserved).toBeGreaterThanOrEqual(0)
      expect(after.available + after.reserved).toBeLessThanOrEqual(MAX_UNITS)
      for (const reservationId of held) {
        const released = await exit((c) => c.release({ reservationId }))
        // A committed one is refused with its declared conflict; anything else is released.
        if (Exit.isFailure(released)) {
          expect(Option.getOrUndefined(Exit.causeOption(released).pipe(Option.flatMap((c) => Option.fromNullable(
            c._tag === "Fail" ? c.error : undefined
          ))))).toMatchObject({ _tag: "ReservationConflict", status: "committed" })
        }
      }
      const released = await levels(productId)
      expect(released).toEqual({ available: after.available + after.reserved, reserved: 0 })
    }

    /**
     * What a call must answer: its value, or an error its contract declares; with a quantity
     * outside `Quantity`, a refusal before it runs (the payload check), changing nothing.
     */
    const expectAnswered = async (
      operation: Operation,
      productId: ProductId,
      quantity: number | undefined,
      result: Exit.Exit<unknown, unknown>,
      before: { available: number; reserved: number }
    ) => {
      if (quantity !== undefined && !valid(quantity)) {
        expect(Exit.isFailure(result)).toBe(true)
        expect(String(Exit.isFailure(result) && Option.getOrUndefined(Exit.causeOption(result).pipe(
          Option.flatMap((c) => Option.fromNullable(c._tag === "Die" ? c.defect : undefined))
        )))).toContain(`inventory.${operation} payload`)
        expect(await levels(productId)).toEqual(before)
        return
      }
      if (Exit.isSuccess(result)) return
      const rpc = InventoryRpcs.requests.get(operation)!
      const failure = Exit.causeOption(result).pipe(
        Option.flatMap((c) => Option.fromNullable(c._tag === "Fail" ? c.error : undefined))
      )
      expect(Option.isSome(failure), `${operation} died: ${String(Exit.causeOption(result))}`).toBe(true)
      expect(Schema.is(rpc.errorSchema as Schema.Schema<unknown>)(Option.getOrThrow(failure))).toBe(true)
    }

    /** The quantities outside `Quantity`, on one product in `state`: each refused unrun. */
    const refusedUnrun = async (
      state: State,
      operation: Operation,
      call: (productId: ProductId, quantity: number) => (client: InventoryClient["Type"]) => Effect.Effect<unknown, unknown>
    ) => {
      const { held, productId } = await arrange(state)
      const before = await levels(productId)
      for (const quantity of QUANTITIES.filter((q) => !valid(q))) {
        await expectAnswered(operation, productId, quantity, await exit(call(productId, quantity)), before)
      }
      await settle(productId, held)
    }

    /** For each operation of the contract, how to call it at a boundary quantity from a state. */
    const sweeps: Record<Operation, (state: State) => Promise<void>> = {
      restock: async (state) => {
        await refusedUnrun(state, "restock", (productId, quantity) => (c) => c.restock({ productId, quantity }))
        for (const quantity of QUANTITIES.filter(valid)) {
          const { held, productId } = await arrange(state)
          const before = await levels(productId)
          const result = await exit((c) => c.restock({ productId, quantity }))
          await expectAnswered("restock", productId, quantity, result, before)
          if (before.available + before.reserved + quantity <= MAX_UNITS) {
            expect(await levels(productId)).toEqual({ ...before, available: before.available + quantity })
          } else {
            expect(result).toEqual(Exit.fail(new StockLimitExceeded({ productId, limit: MAX_UNITS })))
            expect(await levels(productId)).toEqual(before)
          }
          await settle(productId, held)
        }
      },
      get: async (state) => {
        const { held, productId } = await arrange(state)
        const before = await levels(productId)
        await expectAnswered("get", productId, undefined, await exit((c) => c.get({ productId })), before)
        await settle(productId, held)
      },
      reserve: async (state) => {
        await refusedUnrun(state, "reserve", (productId, quantity) => (c) =>
          c.reserve({ reservationId: reservation(), lines: [{ productId, quantity }] }))
        for (const quantity of QUANTITIES.filter(valid)) {
          const { held, productId } = await arrange(state)
          const before = await levels(productId)
          const reservationId = reservation()
          const result = await exit((c) => c.reserve({ reservationId, lines: [{ productId, quantity }] }))
          await expectAnswered("reserve", productId, quantity, result, before)
          if (quantity <= before.available) {
            expect(Exit.isSuccess(result)).toBe(true)
            expect(await levels(productId)).toEqual({
              available: before.available - quantity,
              reserved: before.reserved + quantity
            })
          } else {
            expect(result).toEqual(
              Exit.fail(new StockInsufficient({ productId, requested: quantity, available: before.available }))
            )
          }
          await settle(productId, [...held, reservationId])
        }
      },
      release: async (state) => {
        const { held, productId } = await arrange(state)
        for (const reservationId of held) {
          const before = await levels(productId)
          await expectAnswered("release", productId, undefined, await exit((c) => c.release({ reservationId })), before)
        }
        await settle(productId, held)
      },
      commit: async (state) => {
        const { held, productId } = await arrange(state)
        for (const reservationId of held) {
          const before = await levels(productId)
          await expectAnswered("commit", productId, undefined, await exit((c) => c.commit({ reservationId })), before)
        }
        await settle(productId, held)
      }
    }

    it("sweeps every operation of the contract", () => {
      expect(Object.keys(sweeps).sort()).toEqual([...InventoryRpcs.requests.keys()].sort())
    })

    for (const operation of Object.keys(sweeps) as Array<Operation>) {
      it(`${operation}: at the boundary quantities, from every boundary state, answers, keeps the bound, and every hold releases`, async () => {
        for (const state of STATES) await sweeps[operation](state)
      })
    }

    it("restock to the bound, reserve it all, restock again: refused; then reserve, release and commit all answer", async () => {
      const productId = product()
      await inventory((c) => c.restock({ productId, quantity: MAX_UNITS }))
      const first = reservation()
      await inventory((c) => c.reserve({ reservationId: first, lines: [{ productId, quantity: MAX_UNITS }] }))
      expect(await exit((c) => c.restock({ productId, quantity: 1 }))).toEqual(
        Exit.fail(new StockLimitExceeded({ productId, limit: MAX_UNITS }))
      )
      expect(await levels(productId)).toEqual({ available: 0, reserved: MAX_UNITS })
      expect(await exit((c) => c.reserve({ reservationId: reservation(), lines: [{ productId, quantity: 1 }] }))).toEqual(
        Exit.fail(new StockInsufficient({ productId, requested: 1, available: 0 }))
      )
      expect((await inventory((c) => c.release({ reservationId: first }))).status).toBe("released")
      expect(await levels(productId)).toEqual({ available: MAX_UNITS, reserved: 0 })

      const second = reservation()
      await inventory((c) => c.reserve({ reservationId: second, lines: [{ productId, quantity: MAX_UNITS }] }))
      expect((await inventory((c) => c.commit({ reservationId: second }))).status).toBe("committed")
      expect(await levels(productId)).toEqual({ available: 0, reserved: 0 })
      expect((await inventory((c) => c.restock({ productId, quantity: MAX_UNITS }))).available).toBe(MAX_UNITS)
    })
  }
)
