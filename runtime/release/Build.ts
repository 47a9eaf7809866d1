/**
 * `npm run build`: compiles the release to `dist/`, plain JavaScript that `node` and `deno` run
 * with no TypeScript loader and nothing else beside it:
 *
 *     dist/tessera.mjs          every module, the runtime and their dependencies in one ES module
 *     dist/pglite.{wasm,data}   embedded PostgreSQL's files, found beside the bundle
 *     dist/initdb.wasm
 *     dist/pgdata/              a new data directory, so that a first boot need not run initdb
 *     dist/.inputs              a digest of what it was built from
 *
 * `--if-stale` builds only when the digest of the inputs (sources, migrations, lockfile) differs
 * from the one recorded, which is what `npm start` runs first.
 *
 * esbuild runs without `keepNames`: the `Object.defineProperty(Class, "name", …)` it would emit
 * makes V8 re-optimise and discard every Schema.Class constructor on Node 20 (a third of a remote
 * caller's CPU). Nothing here reads a function's or class's `name`.
 */
import { PGlite } from "@electric-sql/pglite"
import * as esbuild from "esbuild"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as EmbeddedPostgres from "../db/EmbeddedPostgres.ts"

export const root = fileURLToPath(new URL("../..", import.meta.url))
export const dist = path.join(root, "dist")

/** The files the release is built from: everything but tests and test helpers. */
const inputs = (): Array<string> => {
  const found = ["main.ts", "package-lock.json"]
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const relative = path.join(dir, entry.name)
      if (entry.isDirectory()) {
        if (relative !== path.join("runtime", "testing")) walk(relative)
      }
      else if (!entry.name.endsWith(".test.ts")) found.push(relative)
    }
  }
  for (const dir of ["runtime", "modules", "migrations"]) walk(dir)
  return found.sort()
}

/** A digest of every input's path and content. */
export const digest = (): string => {
  const hash = createHash("sha256")
  for (const file of inputs()) {
    hash.update(file).update("\0").update(fs.readFileSync(path.join(root, file))).update("\0")
  }
  return hash.digest("hex")
}

const DIGEST_FILE = path.join(dist, ".inputs")

/** Whether `dist/` was built from the inputs as they are now. */
export const isFresh = (): boolean => {
  try {
    return fs.readFileSync(DIGEST_FILE, "utf8") === digest()
  } catch {
    return false
  }
}

/** Every `migrations/<module>/*.sql`, as the source of `BundledMigrations.ts`. */
const bundledMigrations = (): string => {
  const dir = path.join(root, "migrations")
  const entries = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((module) =>
    fs.readdirSync(path.join(dir, module.name)).filter((file) => file.endsWith(".sql")).sort().map((file) => ({
      module: module.name,
      file,
      sql: fs.readFileSync(path.join(dir, module.name, file), "utf8")
    }))
  )
  return `export const bundled = ${JSON.stringify(entries)}\n`
}

/** Replaces `runtime/db/BundledMigrations.ts` with the migrations themselves. */
const migrationsPlugin: esbuild.Plugin = {
  name: "tessera-migrations",
  setup(build) {
    build.onLoad({ filter: /[\\/]runtime[\\/]db[\\/]BundledMigrations\.ts$/ }, () => ({
      contents: bundledMigrations(),
      loader: "js"
    }))
  }
}

/** PGlite's files, which it loads from beside its module (now the bundle). */
const PGLITE_FILES = ["pglite.wasm", "pglite.data", "initdb.wasm"]

/**
 * Bundles `entry` (and every dependency) into one ES module at `outfile`, compiled as the release
 * is; the benchmarks build their server process with it, so that they measure what users run.
 */
export const bundle = async (entry: string, outfile: string) => {
  await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    keepNames: false,
    // Whitespace and syntax only: identifiers keep their names, so stack traces and profiles of
    // the release stay readable; the parse time this leaves is measured by `npm run bench`.
    minifySyntax: true,
    minifyWhitespace: true,
    legalComments: "none",
    sourcemap: "linked",
    // Dependencies written as CommonJS call `require` for Node's built-ins.
    banner: { js: `import { createRequire as __tesseraRequire } from "node:module"; const require = __tesseraRequire(import.meta.url);` },
    plugins: [migrationsPlugin],
    logLevel: "warning"
  })
}

/**
 * A new data directory for the embedded database, made as a first boot makes it (PGlite's initdb,
 * the release's settings) and closed cleanly.
 */
const dataDirTemplate = async (dir: string) => {
  const db = await PGlite.create({ ...EmbeddedPostgres.options, dataDir: dir })
  await db.close()
}

export const build = async () => {
  const started = Date.now()
  const stamp = digest()
  fs.rmSync(dist, { recursive: true, force: true })
  fs.mkdirSync(dist, { recursive: true })
  await Promise.all([
    bundle(path.join(root, "runtime/release/start.ts"), path.join(dist, "tessera.mjs")),
    dataDirTemplate(path.join(dist, EmbeddedPostgres.TEMPLATE_DIR))
  ])
  const pglite = path.dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"))
  for (const file of PGLITE_FILES) fs.copyFileSync(path.join(pglite, file), path.join(dist, file))
  fs.writeFileSync(DIGEST_FILE, stamp)
  return Date.now() - started
}

const isEntryPoint = process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
if (isEntryPoint) {
  if (process.argv.includes("--if-stale") && isFresh()) process.exit(0)
  const ms = await build()
  console.error(`built ${path.relative(process.cwd(), dist) || "."}/tessera.mjs in ${ms} ms`)
}
