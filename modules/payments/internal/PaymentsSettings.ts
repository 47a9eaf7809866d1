/** Payments' own settings: where the payment provider is, and the policy of calls to it. */
import { Either } from "effect"
import * as Policy from "../../../runtime/resilience/Policy.ts"
import * as Setting from "../../../runtime/Setting.ts"

/** The policy's target name: its settings are `TESSERA_PAYMENT_PROVIDER_CALL_TIMEOUT` and the rest. */
export const PROVIDER = "payment-provider"

export const providerUrl = Setting.optional({
  name: "TESSERA_PAYMENT_PROVIDER_URL",
  description: "the payment provider's base URL; unset: a simulator (psp-sim) started in the payments process",
  expected: "an http or https URL",
  kind: { _tag: "Custom", invalid: ["not a url", "ftp://psp.example", "postgres://127.0.0.1/db", "http://"] },
  display: "url",
  parse: (raw) => {
    if (!URL.canParse(raw)) return Either.left("")
    const url = new URL(raw)
    return (url.protocol === "http:" || url.protocol === "https:") && url.host !== ""
      ? Either.right(raw.replace(/\/+$/, ""))
      : Either.left("")
  }
})

/**
 * What payments declares of the provider's policy (the environment overrides it): an attempt
 * that has not been answered in 2 s is given up and its outcome asked for by key, well before the
 * caller's own deadline.
 */
export const providerPolicy: Policy.Defaults = { timeout: "2 seconds", deadline: "6 seconds" }

export const all = [providerUrl, ...Policy.settingsFor(PROVIDER)]
