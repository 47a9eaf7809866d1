/**
 * Payments' declaration for the runtime, and its `psp-sim` command (the payment provider
 * simulator, served alone); imported only by the composition root.
 */
import { Duration } from "effect"
import * as Module from "../../runtime/Module.ts"
import * as PaymentsSettings from "./internal/PaymentsSettings.ts"
import { PaymentsHandlers } from "./internal/PaymentsHandlers.ts"
import { PaymentsClient } from "./PaymentsApi.ts"

export { command as PspSimCommand } from "./internal/PspSimCommand.ts"

export const PaymentsModule = Module.make({
  client: PaymentsClient,
  handlers: PaymentsHandlers,
  settings: PaymentsSettings.all,
  /**
   * For its callers: a charge may wait out the provider's attempt timeout (2 s) and then ask the
   * provider by key under its deadline (6 s): one attempt gets 9 s, and such a charge is not
   * counted slow by the callers' breaker.
   */
  resilience: { timeout: "9 seconds", deadline: "20 seconds", breaker: { slowCall: Duration.seconds(9) } }
})
