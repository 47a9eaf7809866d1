/** The catalog's public face: its contract and its events. Other modules import nothing else from it. */
export * from "./CatalogApi.ts"
export * from "./CatalogEvents.ts"
