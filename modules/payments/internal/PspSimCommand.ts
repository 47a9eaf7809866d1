/**
 * `tessera psp-sim --port N`: serves the payment provider simulator (PspSim.ts) until the process
 * is stopped. Point payments at it with `TESSERA_PAYMENT_PROVIDER_URL=http://127.0.0.1:N`.
 */
import { Command, Options } from "@effect/cli"
import { Effect } from "effect"
import * as PspSim from "./PspSim.ts"

const port = Options.integer("port").pipe(
  Options.withDescription("the port to listen on (0: any free port)"),
  Options.withDefault(4010)
)
const host = Options.text("host").pipe(
  Options.withDescription("the address to listen on"),
  Options.withDefault("127.0.0.1")
)

export const command = Command.make("psp-sim", { port, host }, ({ host, port }) =>
  Effect.gen(function*() {
    if (port < 0 || port > 65535) return yield* Effect.fail(new Error(`--port: expected 0-65535, got ${port}`))
    const sim = yield* PspSim.scoped({ port, host })
    yield* Effect.logInfo(`payment provider simulator listening at ${sim.url}`).pipe(Effect.annotateLogs({ url: sim.url, port: sim.port }))
    return yield* Effect.never
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription("Serve the payment provider simulator (tok_ok, tok_decline, tok_slow, tok_flaky, tok_ambiguous)")
  )
