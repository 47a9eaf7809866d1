import { describe, expect, it } from "vitest"
import { parse } from "yaml"
import * as Yaml from "./Yaml.ts"

describe("Yaml.stringify", () => {
  it("writes what a YAML reader reads back as the same data, quoting only strings that would read as something else", () => {
    const data = {
      plain: "gateway,catalog",
      words: ["true", "no", "on", "null", "~", "8080", "1.5", "0x1F", "-e", ".inf", "", " padded ", "a: b", "a #b", "end:", "*star", "&anchor", "!tag", "'q'", "\"dq\"", "new\nline", "ünïcode"],
      numbers: [0, 8080, -1, 1.5],
      flags: [true, false, null],
      nested: { list: [{ a: 1, b: [{ c: "d" }] }, []], empty: {}, "key with: colon": "v", "module.tessera.dev/x": "true" },
      skipped: undefined
    }
    const text = Yaml.stringify(data)
    const { skipped: _, ...expected } = data
    expect(parse(text)).toEqual(expected)
    expect(text).toContain("plain: gateway,catalog\n")
    expect(text).toContain('  - "true"\n')
    expect(text).toContain('  module.tessera.dev/x: "true"\n')
  })

  it("puts a comment above the document", () => {
    expect(Yaml.stringify({ a: 1 }, "first\n\nsecond")).toBe("# first\n#\n# second\na: 1\n")
  })
})
