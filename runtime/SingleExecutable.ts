/**
 * Whether this process is the single executable that `npm run build:exe` writes (a Node single
 * executable application, `dist/tessera`), and the files it carries inside itself.
 *
 * The executable has nothing beside it, so the files a dependency would read from beside its
 * module (PGlite's WASM and data) travel inside it as SEA assets, gzip-compressed by the build
 * (uncompressed they would take the executable past 100 MiB). `node:sea` is loaded through
 * `createRequire`, not imported: the ES module release also runs on Deno, which has no `node:sea`,
 * and there it simply is not the executable.
 */
import type { Buffer } from "node:buffer"
import { createRequire } from "node:module"
import { promisify } from "node:util"
import * as zlib from "node:zlib"

type Sea = typeof import("node:sea")

const sea: Sea | undefined = (() => {
  try {
    return createRequire(import.meta.url)("node:sea") as Sea
  } catch {
    return undefined
  }
})()

/** True inside `dist/tessera`; false under `node`, `tsx` or `deno`. */
export const isSingleExecutable: boolean = sea?.isSea() ?? false

/** PGlite's files the executable carries, by asset name (their file name in PGlite's package). */
export const PGLITE_ASSETS = ["pglite.wasm", "initdb.wasm", "pglite.data"] as const

export type PgliteAsset = typeof PGLITE_ASSETS[number]

/** How the build compresses an asset; `asset` undoes it. */
export const compress = (bytes: Uint8Array): Buffer => zlib.gzipSync(bytes, { level: 9 })

const gunzip = promisify(zlib.gunzip)

/** One of the executable's assets, uncompressed (on libuv's threads, so several at once). */
export const asset = async (name: PgliteAsset): Promise<Uint8Array> => {
  if (sea === undefined || !sea.isSea()) throw new Error(`${name} is carried only by the single executable`)
  return gunzip(new Uint8Array(sea.getAsset(name)))
}

declare global {
  // The project compiles without TypeScript's DOM library, which is where WebAssembly's values
  // are declared; PGlite takes compiled modules, and this is the one function used to make them.
  namespace WebAssembly {
    interface Module {}
    function compile(bytes: Uint8Array): Promise<Module>
  }
}
