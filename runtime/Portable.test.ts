/**
 * The release runs on Node and on Deno from the same source (ARCHITECTURE.md, "Runtimes"): no
 * source file of the build leans on a global that only Node defines. Each such name is imported
 * from its `node:` module where it is used.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))

/** A Node-only global, and the module that exports it. */
const NODE_GLOBALS: ReadonlyArray<{ readonly name: string; readonly module: string }> = [
  { name: "Buffer", module: "node:buffer" },
  { name: "setImmediate", module: "node:timers" },
  { name: "clearImmediate", module: "node:timers" }
]

/** Names that have no meaning outside CommonJS on Node, in an ESM build. */
const FORBIDDEN = ["__dirname", "__filename", "global"]

const BUILD_SCRIPT = path.join("runtime", "release", "Build.ts")

/**
 * Every source file of the build: main.ts, runtime/ and modules/, tests and test helpers aside,
 * and the build script (`runtime/release/Build.ts`, a Node program that runs before the release).
 */
const sources = (): Array<string> => {
  const found = ["main.ts"]
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const relative = path.join(dir, entry.name)
      if (entry.isDirectory()) {
        if (relative !== path.join("runtime", "testing")) walk(relative)
      } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") && relative !== BUILD_SCRIPT) found.push(relative)
    }
  }
  for (const dir of ["runtime", "modules"]) walk(dir)
  return found
}

/** The code of a file without its comments and string literals, so that only code is searched. */
const codeOf = (text: string) =>
  text
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/[^\n]*/g, "")
    .replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`/g, '""')

/** The names a file imports from `module`. */
const importedFrom = (text: string, module: string): Set<string> => {
  const names = new Set<string>()
  const pattern = new RegExp(`import\\s+(?:type\\s+)?\\{([^}]*)\\}\\s+from\\s+"${module}"`, "g")
  for (const match of text.matchAll(pattern)) {
    for (const part of match[1]!.split(",")) {
      const name = part.replace(/^\s*type\s+/, "").split(/\s+as\s+/).pop()!.trim()
      if (name !== "") names.add(name)
    }
  }
  return names
}

/** What in `text` uses a Node-only global without importing it. */
export const violations = (text: string): Array<string> => {
  const code = codeOf(text.replace(/^import[^\n]*(?:\n(?!import)[^\n]*)*?from "[^"]+"/gm, ""))
  const found: Array<string> = []
  for (const { module, name } of NODE_GLOBALS) {
    if (new RegExp(`(?<![.\\w$])${name}\\b`).test(code) && !importedFrom(text, module).has(name)) {
      found.push(`${name} is used without import { ${name} } from "${module}"`)
    }
  }
  for (const name of FORBIDDEN) {
    // `declare global { … }` is TypeScript's augmentation of the global scope, not the variable.
    if (new RegExp(`(?<![.\\w$])(?<!declare\\s+)${name}(?![\\w$])(?!\\s*:)`).test(code)) found.push(`${name} is a CommonJS-on-Node global`)
  }
  return found
}

describe("no Node-only globals", () => {
  it("finds them when they are there", () => {
    expect(violations(`const b = Buffer.from("x")`)).toEqual([`Buffer is used without import { Buffer } from "node:buffer"`])
    expect(violations(`import { Buffer } from "node:buffer"\nconst b = Buffer.from("x")`)).toEqual([])
    expect(violations(`import type { Buffer } from "node:buffer"\nconst f = (b: Buffer) => b`)).toEqual([])
    expect(violations(`setImmediate(flush)`)).toHaveLength(1)
    expect(violations(`const here = __dirname`)).toEqual(["__dirname is a CommonJS-on-Node global"])
    // Comments, strings and properties of the same name are not uses.
    expect(violations(`// Buffer\nconst s = "setImmediate"\nconst x = value.Buffer\nconst o = { global: 1 }`)).toEqual([])
  })

  it("are used by no source file of the build", () => {
    const found = sources().flatMap((file) => violations(fs.readFileSync(path.join(root, file), "utf8")).map((v) => `${file}: ${v}`))
    expect(found).toEqual([])
  })
})
