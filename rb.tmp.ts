import * as Build from "./runtime/release/Build.ts"
await Build.bundle("bench/resilience.bench.ts", "bench/rb.tmp.mjs")
