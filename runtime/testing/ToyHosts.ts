/**
 * The toy hosts (SagaToyHost.ts, MessagingToyHost.ts) compiled as the release is (Build.bundle:
 * plain JavaScript, no `keepNames`), beside it in dist/ (where the embedded database's files
 * are), for the suites and the events bench that run them as processes of their own.
 *
 * Not run through tsx: a process started with `--import tsx` spent about 4.7 s loading (1 s
 * compiled), on every start and restart of a crash test, and ran slower once up (esbuild's
 * `keepNames` under tsx, see Build.ts), so that a benchmark of it measured the loader.
 *
 * The compiler is passed in (`build(Build.bundle)`): this file is part of the toys' own bundle
 * (MessagingToy.ts spawns its host), which must not carry esbuild.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

const HOSTS = {
  saga: { source: "runtime/testing/SagaToyHost.ts", bundle: "test-saga-toy.mjs" },
  messaging: { source: "runtime/testing/MessagingToyHost.ts", bundle: "test-messaging-toy.mjs" }
} as const

export type Host = keyof typeof HOSTS

/** The compiled host `host`, once `build` ran. */
export const entry = (host: Host) => path.join(root, "dist", HOSTS[host].bundle)

/** Compiles every toy host with `bundle` (after the release: the embedded database's files in dist/ are used). */
export const build = (bundle: (entry: string, outfile: string) => Promise<void>) =>
  Promise.all(Object.entries(HOSTS).map(([host, { source }]) => bundle(path.join(root, source), entry(host as Host))))
