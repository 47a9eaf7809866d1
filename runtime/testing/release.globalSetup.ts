/**
 * Builds the release before the tests run, when it is missing or older than the source: the
 * end-to-end suites start `dist/tessera.mjs`, as users do. Then compiles the toy hosts beside it
 * (ToyHosts.ts), every time (a second or two).
 */
import * as Build from "../release/Build.ts"
import * as ToyHosts from "./ToyHosts.ts"

export default async function setup() {
  await Build.build({ ifStale: true })
  await ToyHosts.build(Build.bundle)
}
