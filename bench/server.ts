/**
 * The bench's server process: the production `tessera serve` command with a build that holds
 * only the Echo module. Run as `server.ts serve` with TESSERA_MODULES, PORT and LOG_LEVEL set.
 */
import * as Cli from "../runtime/Cli.ts"
import { EchoModule } from "./Echo.ts"

Cli.main([EchoModule])
