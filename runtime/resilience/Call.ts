/**
 * What a policy needs to know of a call: whom it goes to, its name, and whether repeating it is
 * harmless. A module call's `CallInfo` (transport/Client.ts) is one; an outbound HTTP request
 * (`Policy.httpClient`) makes its own.
 */
import type { CallInfo } from "../transport/Client.ts"

export type Call = Pick<CallInfo, "module" | "name" | "idempotent">
