/**
 * `npm run build`: compiles the release to `dist/`, plain JavaScript that `node` and `deno` run
 * with no TypeScript loader and nothing else beside it:
 *
 *     dist/tessera.mjs          the entry: every module, the runtime and their dependencies, as ES
 *     dist/tessera-*.mjs        modules: the entry and the chunks it imports, at once or on demand
 *     dist/pglite.{wasm,data}   embedded PostgreSQL's files, found beside the bundle
 *     dist/initdb.wasm
 *     dist/pgdata/              a new data directory, so that a first boot need not run initdb
 *     dist/.inputs              a digest of what it was built from
 *
 * `npm run build:exe` (`--exe`): the same code as one file that needs nothing installed, a Node
 * single executable application carrying PGlite's files inside it (`../SingleExecutable.ts`):
 *
 *     dist/tessera              this Node with the bundle (CommonJS) and PGlite's files injected
 *     dist/.inputs-exe          a digest of what it was built from, and by which Node
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
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as EmbeddedPostgres from "../db/EmbeddedPostgres.ts"
import { compress, PGLITE_ASSETS } from "../SingleExecutable.ts"

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
const EXE_DIGEST_FILE = path.join(dist, ".inputs-exe")

/** The executable also embeds the Node that builds it. */
const exeDigest = (): string => `${digest()} ${process.version} ${process.platform}-${process.arch}`

const recorded = (file: string, expected: () => string): boolean => {
  try {
    return fs.readFileSync(file, "utf8") === expected()
  } catch {
    return false
  }
}

/** Whether `dist/tessera.mjs` was built from the inputs as they are now. */
export const isFresh = (): boolean => recorded(DIGEST_FILE, digest)

/** Whether `dist/tessera` was built from the inputs as they are now, by this Node. */
export const isExecutableFresh = (): boolean => recorded(EXE_DIGEST_FILE, exeDigest) && fs.existsSync(executable)

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

/**
 * Optional native addons that dependencies try to load and do without (ws: bufferutil,
 * utf-8-validate; pg: pg-native; msgpackr: msgpackr-extract). Inside the executable `require`
 * loads only Node's built-ins and prints a warning on anything else, so the executable carries
 * each as a module that fails to load, which is what the dependency expects when the addon is
 * not installed.
 */
const ABSENT_ADDONS = ["bufferutil", "utf-8-validate", "pg-native", "msgpackr-extract"]

const absentAddonsPlugin: esbuild.Plugin = {
  name: "tessera-absent-addons",
  setup(build) {
    const filter = new RegExp(`^(${ABSENT_ADDONS.join("|")})$`)
    build.onResolve({ filter }, (args) => ({ path: args.path, namespace: "tessera-absent" }))
    build.onLoad({ filter: /.*/, namespace: "tessera-absent" }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not part of the single executable`)})`,
      loader: "js"
    }))
  }
}

/** PGlite's package folder, where its files lie beside its module. */
const pgliteDir = () => path.dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"))

/** What both targets share: one program, the same dependencies, the migrations in the code. */
const shared: esbuild.BuildOptions = {
  entryPoints: [path.join(root, "runtime/release/start.ts")],
  bundle: true,
  platform: "node",
  target: "node20",
  keepNames: false,
  // Whitespace and syntax only: identifiers keep their names, so stack traces and profiles of
  // the release stay readable; the parse time this leaves is measured by `npm run bench`.
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "none",
  plugins: [migrationsPlugin],
  logLevel: "warning"
}

/** The chunks `bundle` wrote beside the entry `name`.mjs in `dir` (and their source maps). */
const chunksOf = (dir: string, name: string) =>
  fs.existsSync(dir) ? fs.readdirSync(dir).filter((file) => new RegExp(`^${name}-[A-Z0-9]+\\.mjs(\\.map)?$`).test(file)) : []

/** What `npm run build` writes; removed before it writes them again, the executable left alone. */
const RELEASE_FILES = ["tessera.mjs", "tessera.mjs.map", ...PGLITE_ASSETS, EmbeddedPostgres.TEMPLATE_DIR, ".inputs"]

/**
 * Bundles `entry` (and every dependency) into the ES module `outfile`, compiled as the release
 * is; the benchmarks build their server process with it, so that they measure what users run.
 *
 * Split into chunks beside it (`<name>-<hash>.mjs`): what is imported on demand (Swagger UI's
 * page, the migrations' text...) is a chunk a process loads only when it needs it. V8 keeps the
 * source of every script it loads, and a process that loads less also evaluates less: one module
 * on PostgreSQL held 10 MB less at idle split than as one 5.4 MB file (`npm run bench`, startup).
 */
export const bundle = async (entry: string, outfile: string) => {
  const name = path.basename(outfile, ".mjs")
  for (const file of chunksOf(path.dirname(outfile), name)) fs.rmSync(path.join(path.dirname(outfile), file), { force: true })
  await esbuild.build({
    ...shared,
    entryPoints: { [name]: entry },
    outdir: path.dirname(outfile),
    outExtension: { ".js": ".mjs" },
    splitting: true,
    chunkNames: `${name}-[hash]`,
    format: "esm",
    sourcemap: "linked",
    // Dependencies written as CommonJS call `require` for Node's built-ins.
    banner: { js: `import { createRequire as __tesseraRequire } from "node:module"; const require = __tesseraRequire(import.meta.url);` }
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

const LOCK = path.join(dist, ".build-lock")

/** Whether the process that took the lock is gone (it crashed mid-build). */
const lockIsAbandoned = (): boolean => {
  try {
    process.kill(Number(fs.readFileSync(path.join(LOCK, "pid"), "utf8")), 0)
    return false
  } catch (error) {
    // No pid file yet (the owner is between mkdir and writing it) counts as held.
    return (error as NodeJS.ErrnoException).code === "ESRCH"
  }
}

/**
 * Runs `work` while holding `dist/.build-lock`: processes started together (two `npm start`, a
 * test run beside a start) may each find the release stale, and two builds writing `dist/` at
 * once would leave it mixed. The others wait, then find it fresh. A lock whose process is gone is
 * taken over.
 */
const exclusively = async <A>(work: () => Promise<A>): Promise<A> => {
  fs.mkdirSync(dist, { recursive: true })
  for (;;) {
    try {
      fs.mkdirSync(LOCK)
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
      if (lockIsAbandoned()) fs.rmSync(LOCK, { recursive: true, force: true })
      else await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }
  try {
    fs.writeFileSync(path.join(LOCK, "pid"), String(process.pid))
    return await work()
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true })
  }
}

/** Builds the release (`dist/tessera.mjs` and the files beside it); resolves how long it took. */
const buildRelease = async () => {
  const started = Date.now()
  const stamp = digest()
  for (const file of RELEASE_FILES) fs.rmSync(path.join(dist, file), { recursive: true, force: true })
  await Promise.all([
    bundle(path.join(root, "runtime/release/start.ts"), path.join(dist, "tessera.mjs")),
    dataDirTemplate(path.join(dist, EmbeddedPostgres.TEMPLATE_DIR))
  ])
  for (const file of PGLITE_ASSETS) fs.copyFileSync(path.join(pgliteDir(), file), path.join(dist, file))
  fs.writeFileSync(DIGEST_FILE, stamp)
  return Date.now() - started
}

/** Builds the release; with `ifStale`, only when it is missing or older than the source (resolves 0 then). */
export const build = (options: { readonly ifStale?: boolean } = {}) =>
  exclusively(() => (options.ifStale && isFresh() ? Promise.resolve(0) : buildRelease()))

/** The single executable's path. */
export const executable = path.join(dist, "tessera")

/** The fuse Node looks for to know it carries a single executable application's blob. */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2"

const run = (command: string, args: ReadonlyArray<string>) => {
  try {
    execFileSync(command, args, { stdio: ["ignore", "pipe", "pipe"] })
  } catch (cause) {
    const stderr = (cause as { stderr?: Buffer }).stderr?.toString().trim()
    throw new Error(`${path.basename(command)} ${args.join(" ")} failed: ${stderr || String(cause)}`, { cause })
  }
}

/**
 * Writes `dist/tessera`: the release bundled as one CommonJS file (what a Node 20 single
 * executable runs), made into a preparation blob with PGlite's files as assets by
 * `node --experimental-sea-config`, and injected by postject into a copy of this Node stripped of
 * its symbols. Stripping (Node 20's binary is 94 MiB with them, 82 without) and compressing the
 * assets (15 MiB, 5 gzipped) keep the executable under 100 MiB.
 *
 * Two things differ from the ES module release. `import.meta` is empty in CommonJS, and PGlite
 * builds URLs from `import.meta.url`, so it is defined from `__filename` (the executable itself;
 * PGlite is given its files and reads nothing beside it). And the code cache stays off: with it,
 * PGlite's `import("node:module")` fails on Node 20.
 */
export const buildExecutable = (options: { readonly ifStale?: boolean } = {}) =>
  exclusively(() => (options.ifStale && isExecutableFresh() ? Promise.resolve(0) : writeExecutable()))

const writeExecutable = async () => {
  if (process.platform !== "linux") {
    throw new Error(`npm run build:exe builds for Linux only (this is ${process.platform}): other systems need the binary's signature removed and restored`)
  }
  const started = Date.now()
  const stamp = exeDigest()
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-exe-"))
  try {
    const main = path.join(work, "tessera.cjs")
    await esbuild.build({
      ...shared,
      outfile: main,
      format: "cjs",
      minifyWhitespace: true,
      plugins: [...shared.plugins!, absentAddonsPlugin],
      define: { "import.meta.url": "__tesseraImportMetaUrl" },
      banner: { js: `var __tesseraImportMetaUrl = require("node:url").pathToFileURL(__filename).href;` }
    })
    const blob = path.join(work, "tessera.blob")
    const config = path.join(work, "sea-config.json")
    fs.writeFileSync(config, JSON.stringify({
      main,
      output: blob,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: false,
      assets: Object.fromEntries(PGLITE_ASSETS.map((file) => {
        const packed = path.join(work, `${file}.gz`)
        fs.writeFileSync(packed, compress(fs.readFileSync(path.join(pgliteDir(), file))))
        return [file, packed]
      }))
    }))
    run(process.execPath, ["--experimental-sea-config", config])

    const binary = path.join(work, "tessera")
    fs.copyFileSync(process.execPath, binary)
    fs.chmodSync(binary, 0o755)
    run("strip", [binary])
    run(process.execPath, [
      createRequire(import.meta.url).resolve("postject/dist/cli.js"),
      binary,
      "NODE_SEA_BLOB",
      blob,
      "--sentinel-fuse",
      SEA_FUSE
    ])
    fs.mkdirSync(dist, { recursive: true })
    fs.rmSync(EXE_DIGEST_FILE, { force: true })
    fs.copyFileSync(binary, executable)
    fs.chmodSync(executable, 0o755)
    fs.writeFileSync(EXE_DIGEST_FILE, stamp)
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
  return Date.now() - started
}

const isEntryPoint = process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
if (isEntryPoint) {
  const exe = process.argv.includes("--exe")
  const ifStale = process.argv.includes("--if-stale")
  const ms = exe ? await buildExecutable({ ifStale }) : await build({ ifStale })
  if (ms > 0) {
    const written = exe ? executable : path.join(dist, "tessera.mjs")
    const size = exe ? ` (${(fs.statSync(written).size / 2 ** 20).toFixed(1)} MiB)` : ""
    console.error(`built ${path.relative(process.cwd(), written)}${size} in ${ms} ms`)
  }
}
