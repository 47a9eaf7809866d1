/** Which rpcs the contracts mark idempotent: the ones a retry may repeat without harm. */
import { describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Idempotent from "../transport/Idempotent.ts"

const marked = (module: string) => {
  const found = modules.find((m) => m.name === module)!
  return [...found.client.group.requests.values()].filter(Idempotent.isAnnotated).map((rpc) => rpc._tag).sort()
}

describe("idempotent rpcs", () => {
  it("are the reads, inventory's calls by reservation id and shipping's by order; restock only with a key", () => {
    expect(marked("catalog")).toEqual(["get", "list"])
    expect(marked("inventory")).toEqual(["commit", "get", "release", "reserve"])
    expect(marked("identity")).toEqual(["authenticateApiKey", "getUser", "jwks", "listApiKeys", "me", "revokeApiKey"])
    expect(marked("shipping")).toEqual(["byOrder", "cancel", "create", "markShipped", "release"])
  })
})
