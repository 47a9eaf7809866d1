/**
 * The dependency rule, as a check: a module imports only its own files, `runtime/`, and other
 * modules' `index.ts`; `runtime/` imports no module; only the composition root (`main.ts`)
 * imports a module's declaration (`<Name>Module.ts`). `npm run lint` and the test suite run it.
 */
import * as fs from "node:fs"
import * as path from "node:path"

const IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g

/** The relative specifiers a TypeScript source imports or re-exports. */
export const specifiers = (source: string): ReadonlyArray<string> =>
  [...source.matchAll(IMPORT)].map((m) => (m[1] ?? m[2])!).filter((s) => s.startsWith("."))

const moduleOf = (file: string): string | undefined => {
  const parts = file.split("/")
  return parts[0] === "modules" && parts.length > 2 ? parts[1] : undefined
}

/**
 * The violations in a tree given as `file → source` (paths relative to the project root,
 * with `/` separators). Each names the file, what it imports, and the rule.
 */
export const violations = (files: ReadonlyMap<string, string>): ReadonlyArray<string> => {
  const found: Array<string> = []
  for (const [file, source] of files) {
    const own = moduleOf(file)
    for (const spec of specifiers(source)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec))
      const other = moduleOf(target)
      if (file.startsWith("runtime/") && target.startsWith("modules/")) {
        found.push(`${file} imports ${spec}: runtime/ imports no module`)
      } else if (other !== undefined && other !== own) {
        const rest = target.slice(`modules/${other}/`.length)
        const isIndex = rest === "index.ts" || rest === "index"
        const isDeclaration = /^[A-Z][A-Za-z]*Module\.ts$/.test(rest)
        const fromRoot = !file.includes("/") && file.startsWith("main")
        if (!isIndex && !(isDeclaration && fromRoot)) {
          found.push(`${file} imports ${spec}: only modules/${other}/index.ts is public`)
        }
      }
    }
  }
  return found
}

/** Every `.ts` file of the project's own code: the top level, modules/, runtime/ and bench/. */
export const readTree = (root: string): ReadonlyMap<string, string> => {
  const files = new Map<string, string>()
  const add = (relative: string) => files.set(relative, fs.readFileSync(path.join(root, relative), "utf8"))
  for (const entry of fs.readdirSync(root)) if (entry.endsWith(".ts")) add(entry)
  for (const dir of ["modules", "runtime", "bench"]) {
    if (!fs.existsSync(path.join(root, dir))) continue
    for (const entry of fs.readdirSync(path.join(root, dir), { recursive: true, encoding: "utf8" })) {
      if (entry.endsWith(".ts")) add(`${dir}/${entry.split(path.sep).join("/")}`)
    }
  }
  return files
}
