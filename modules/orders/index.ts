/** Orders' public face: its contract and its events. Other modules import nothing else from it. */
export * from "./OrdersApi.ts"
export * from "./OrdersEvents.ts"
