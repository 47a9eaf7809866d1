import { describe, expect, it } from "vitest"
import * as Messages from "./Messages.ts"

describe("the messages notifications would send", () => {
  it("writes amounts in the currency's own minor unit", () => {
    expect(Messages.money(1250, "EUR")).toBe("€12.50")
    expect(Messages.money(1250, "JPY")).toBe("¥1,250")
    expect(Messages.money(1250, "KWD").replace(/\s/gu, " ")).toBe("KWD 1.250")
  })

  it("says why an order was cancelled, for every reason", () => {
    for (const [reason, why] of [
      ["OUT_OF_STOCK", "out of stock"],
      ["PAYMENT_DECLINED", "payment was declined"],
      ["PAYMENT_UNAVAILABLE", "payment provider"],
      ["CANCELLED_BY_CUSTOMER", "you cancelled it"],
      ["ORDER_FAILED", "went wrong on our side"]
    ] as const) {
      const message = Messages.orderCancelled({ orderId: "o-1", customerId: "c-1", reason })
      expect(message).toMatchObject({ kind: "order_cancelled", customerId: "c-1", orderId: "o-1", subject: "Your order was cancelled" })
      expect(message.body).toContain(why)
    }
  })
})
