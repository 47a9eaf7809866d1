/** Shipping's public face: its contract and its events. Other modules import nothing else from it. */
export * from "./ShippingApi.ts"
export * from "./ShippingEvents.ts"
