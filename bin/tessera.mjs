#!/usr/bin/env node
// `npx tessera ...`: runs the built release (dist/tessera.mjs), building it first when it is
// missing or older than the source, as `npm start` does.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

const build = fileURLToPath(new URL("../runtime/release/Build.ts", import.meta.url))
if (fs.existsSync(build)) {
  const built = spawnSync(process.execPath, ["--import", "tsx", build, "--if-stale"], { stdio: "inherit" })
  if (built.status !== 0) process.exit(built.status ?? 1)
}
await import("../dist/tessera.mjs")
