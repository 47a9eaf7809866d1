/**
 * Payments' declaration for the runtime, and its `psp-sim` command (the payment provider
 * simulator, served alone); imported only by the composition root.
 */
import * as Module from "../../runtime/Module.ts"
import * as PaymentsSettings from "./internal/PaymentsSettings.ts"
import { PaymentsHandlers } from "./internal/PaymentsHandlers.ts"
import { PaymentsClient } from "./PaymentsApi.ts"

export { command as PspSimCommand } from "./internal/PspSimCommand.ts"

export const PaymentsModule = Module.make({
  client: PaymentsClient,
  handlers: PaymentsHandlers,
  settings: PaymentsSettings.all
})
