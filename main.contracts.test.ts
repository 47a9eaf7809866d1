/**
 * Every payload field of every RPC of every module, enumerated from the contracts' RpcGroups:
 * a deep or huge value, a wrong type, or hostile text is refused with messages that Effect's
 * formatters render without walking the value (so rendering never overflows the stack) and that
 * quote nothing of it. This is what a peer's bad frame, or a gateway's bad request, meets first.
 */
import type { Rpc, RpcGroup } from "@effect/rpc"
import { Effect, Either, ParseResult, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { CatalogRpcs } from "./modules/catalog/index.ts"
import { DeadLettersRpcs } from "./runtime/messaging/DeadLetters.ts"
import { IdentityRpcs } from "./modules/identity/index.ts"
import { InventoryRpcs } from "./modules/inventory/index.ts"
import { NotificationsRpcs } from "./modules/notifications/index.ts"
import { OrdersRpcs } from "./modules/orders/index.ts"
import { PaymentsRpcs } from "./modules/payments/index.ts"
import { ShippingRpcs } from "./modules/shipping/index.ts"

const MARK = "Zq7Mark"
const deep = JSON.parse(`${"[".repeat(20_000)}"${MARK}"${"]".repeat(20_000)}`)
const deepObject = JSON.parse(`${"{\"a\":".repeat(20_000)}"${MARK}"${"}".repeat(20_000)}`)
/** Values no field accepts (the rest only some: a number, a password with any character). */
const structured = new Set(["a deep array", "a deep object", "a large array"])
const values: ReadonlyArray<readonly [string, unknown]> = [
  ["a deep array", deep],
  ["a deep object", deepObject],
  // Large enough to show it is never quoted; every element of a list of lines is an issue of its own.
  ["a large array", Array.from({ length: 5_000 }, () => MARK)],
  ["a number", 12345678],
  ["NUL in text", `${MARK}\u0000`],
  ["a bidi override", `${MARK}\u202e`],
  ["over-long text", MARK.repeat(1_000)]
]

const groups: Record<string, RpcGroup.RpcGroup<Rpc.Any>> = {
  catalog: CatalogRpcs as never,
  identity: IdentityRpcs as never,
  inventory: InventoryRpcs as never,
  shipping: ShippingRpcs as never,
  payments: PaymentsRpcs as never,
  orders: OrdersRpcs as never,
  notifications: NotificationsRpcs as never,
  // The runtime's calls in every subscriber module's contract (Host.contractOf).
  "(every subscriber)": DeadLettersRpcs as never
}

describe("every payload field of every RPC", () => {
  for (const [module, group] of Object.entries(groups)) {
    for (const [tag, rpc] of group.requests) {
      const payload = (rpc as unknown as Rpc.AnyWithProps).payloadSchema as Schema.Schema<unknown, unknown>
      const fields = Object.keys((payload as unknown as { fields?: object }).fields ?? {})
      if (fields.length === 0) continue
      it(`${module}.${tag}: refuses hostile values in ${fields.join(", ")} without formatting or quoting them`, () => {
        for (const field of fields) {
          for (const [what, value] of values) {
            const result = Schema.decodeUnknownEither(payload)({ [field]: value }, { errors: "all" })
            if (Either.isRight(result)) continue
            const issues = Effect.runSync(ParseResult.ArrayFormatter.formatError(result.left))
            const tree = Effect.runSync(ParseResult.TreeFormatter.formatError(result.left))
            const context = `${module}.${tag} ${field} <- ${what}`
            if (structured.has(what)) expect(issues.map((i) => i.path[0]), context).toContain(field)
            expect(JSON.stringify(issues), context).not.toContain(MARK)
            expect(tree, context).not.toContain(MARK)
          }
        }
      })
    }
  }
})
