/** Shipping's public face: its contract. Other modules import nothing else from it. */
export * from "./ShippingApi.ts"
