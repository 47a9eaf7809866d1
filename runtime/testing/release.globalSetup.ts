/**
 * Builds the release before the tests run, when it is missing or older than the source: the
 * end-to-end suites start `dist/tessera.mjs`, as users do.
 */
import * as Build from "../release/Build.ts"

export default async function setup() {
  await Build.build({ ifStale: true })
}
