/**
 * The release's entry point: runs the `tessera` command of the composition root (main.ts).
 * `npm run build` bundles from here; `npm run dev` runs it from source, restarting on changes.
 */
import { run } from "../../main.ts"

run()
