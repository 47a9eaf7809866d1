import { describe, expect, it } from "@effect/vitest"
import * as RemoteClient from "./RemoteClient.ts"

describe("RemoteClient.endpoint", () => {
  it.each([
    ["http://10.0.0.7:8080", "ws://10.0.0.7:8080/rpc/catalog"],
    ["https://api.example.com", "wss://api.example.com/rpc/catalog"],
    ["https://api.example.com:8443", "wss://api.example.com:8443/rpc/catalog"],
    ["http://host:8080/", "ws://host:8080/rpc/catalog"],
    ["http://host:8080/tessera", "ws://host:8080/tessera/rpc/catalog"],
    ["https://host/a/b//", "wss://host/a/b/rpc/catalog"]
  ])("maps %s to %s", (peer, expected) => {
    expect(RemoteClient.endpoint(peer, "catalog")).toBe(expected)
  })

  it("names the module in the path", () => {
    expect(RemoteClient.endpoint("http://host:8080", "inventory")).toBe("ws://host:8080/rpc/inventory")
  })
})
