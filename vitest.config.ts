import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", ".tessera/**", "dist/**"],
    globalSetup: ["runtime/testing/release.globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 180_000,
    // Two cores: end-to-end suites start servers of their own.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    sequence: { hooks: "stack" }
  }
})
