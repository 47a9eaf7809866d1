/**
 * `tessera` with the messaging toys (MessagingToy.ts) as its modules, for tests and the events
 * bench that run a publisher or a subscriber as a process of their own, killed and started again:
 * `node dist/test-messaging-toy.mjs serve` (compiled by ToyHosts.ts), with `TESSERA_MODULES` (`toypub`,
 * `toysub` or both), a database and `AMQP_URL` as for the release. `spawn` starts one.
 */
import * as Cli from "../Cli.ts"
import * as MessagingToy from "./MessagingToy.ts"

Cli.main([MessagingToy.ToyPubModule, MessagingToy.ToySubModule])
