import { defineConfig } from "vitest/config"

const exclude = ["node_modules/**", ".tessera/**", "dist/**"]

export default defineConfig({
  test: {
    globalSetup: ["runtime/testing/release.globalSetup.ts"],
    testTimeout: 30_000,
    hookTimeout: 180_000,
    // Two cores: end-to-end suites start servers of their own.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // A fork runs file after file without loading every module again for each: 109 files spent
    // 254 s importing Effect and the runtime (collect), 29 s this way. The suites share no state
    // through a module: each builds its own layers, servers and databases.
    isolate: false,
    sequence: { hooks: "stack" },
    projects: [
      { extends: true, test: { name: "tests", include: ["**/*.test.ts"], exclude: [...exclude, "**/*.outage.test.ts", "**/*.alone.test.ts"] } },
      // Suites that stop a shared service (RabbitMQ) run after every other suite, alone, so that
      // no other suite meets the outage they cause; so do those that load the whole machine
      // (`*.alone.test.ts`: eight processes restarted in turn), which would slow every suite
      // beside them and measure their neighbours' load.
      {
        extends: true,
        test: {
          name: "outages",
          include: ["**/*.outage.test.ts", "**/*.alone.test.ts"],
          exclude,
          sequence: { groupOrder: 1 },
          poolOptions: { forks: { singleFork: true } }
        }
      }
    ]
  }
})
