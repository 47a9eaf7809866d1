/** Inventory's public face: its contract and its events. Other modules import nothing else from it. */
export * from "./InventoryApi.ts"
export * from "./InventoryEvents.ts"
