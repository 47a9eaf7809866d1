export * from "./ShippingApi.ts"
