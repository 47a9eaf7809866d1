/** Notifications' public face: its contract. Other modules import nothing else from it. */
export * from "./NotificationsApi.ts"
