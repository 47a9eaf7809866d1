export * from "./PaymentsApi.ts"
