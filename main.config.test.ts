/**
 * Configuration, end to end on the release: `tessera config` and a start refused for bad values.
 */
import { describe, expect, it } from "vitest"
import { modules } from "./main.ts"
import * as Settings from "./runtime/Settings.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Samples from "./runtime/testing/SettingSamples.ts"

const registry = Settings.registry(modules)

/** The fatal lines a process logged. */
const fatal = (output: string) =>
  output.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { level: string; message: string })
    .filter((line) => line.level === "FATAL")

describe("tessera config", () => {
  it("lists every setting with its source, and never prints a secret or a database password", async () => {
    const marker = "MARKER-5d0b8a31-never-printed-MARKER"
    const env: Record<string, string> = { PORT: "8123", TESSERA_RATE_LIMIT: "" }
    for (const setting of registry) {
      if (setting.display === "secret") env[setting.name] = `${marker}-${"s".repeat(256 - marker.length - 1)}`
      if (setting.display === "url") {
        env[setting.name] = setting.kind._tag === "PostgresUrl"
          ? `postgres://admin:${marker}@db.example:5432/shop`
          : setting.name === "AMQP_URL"
          ? `amqp://admin:${marker}@broker.example:5672`
          : `https://admin:${marker}@psp.example/`
      }
    }
    const command = Processes.spawnCommand(["config"], env)
    expect(await command.exited, command.output()).toBe(0)
    const output = command.output()
    expect(output).not.toContain(marker)
    const lines = new Map(output.trim().split("\n").map((line) => [line.split(/\s+/)[0]!, line.split(/\s+/).slice(1)]))
    expect([...lines.keys()]).toEqual(registry.map((s) => s.name))
    expect(lines.get("PORT")).toEqual(["environment", "8123"])
    expect(lines.get("TESSERA_RATE_LIMIT")).toEqual(["default", "100"])
    expect(lines.get("TESSERA_SERVICE_SECRET")).toEqual(["environment", "<redacted>"])
    expect(lines.get("TESSERA_ADMIN_PASSWORD")).toEqual(["environment", "<redacted>"])
    expect(lines.get("DATABASE_URL")).toEqual(["environment", "postgres://admin:<redacted>@db.example:5432/shop"])
    expect(lines.get("TESSERA_CATALOG_DATABASE_URL")?.[0]).toBe("environment")
    expect(lines.get("TESSERA_ADMIN_EMAIL")).toEqual(["unset"])
    expect(lines.get("TESSERA_PAYMENT_PROVIDER_URL")).toEqual(["environment", "https://admin:<redacted>@psp.example/"])
    expect(lines.get("AMQP_URL")).toEqual(["environment", "amqp://admin:<redacted>@broker.example:5672"])
  }, 60_000)

  it("refuses, naming every bad value at once: one fatal line, exit 1", async () => {
    const bad = Samples.oneInvalidEach(registry)
    const command = Processes.spawnCommand(["config"], bad)
    expect(await command.exited, command.output()).toBe(1)
    const [line, ...more] = fatal(command.output())
    expect(more).toEqual([])
    for (const setting of registry) {
      if (Samples.ACCEPTS_ANY.includes(setting.name)) continue
      expect(line!.message, setting.name).toContain(`${setting.name}: expected ${setting.expected}, got `)
    }
    // The table is printed too, each refused value marked.
    expect(command.output()).toMatch(/^PORT\s+environment \(invalid\)\s+abc$/m)
  }, 60_000)

  it("does the same on Deno", async () => {
    const command = Processes.spawnCommand(["config"], { PORT: "abc", TESSERA_SERVICE_SECRET: "hunter2" }, 0, "deno")
    expect(await command.exited, command.output()).toBe(1)
    expect(command.output()).toMatch(/^TESSERA_SERVICE_SECRET\s+environment \(invalid\)\s+<redacted>$/m)
    expect(command.output()).not.toContain("hunter2")
    expect(fatal(command.output()).map((l) => l.message)).toEqual([
      'tessera stopped: invalid configuration: PORT: expected a port number (1-65535), got "abc"; ' +
      "TESSERA_SERVICE_SECRET: expected at least 32 characters (for example: openssl rand -base64 48), got 7 characters"
    ])
  }, 60_000)
})

describe("a start with a bad value", () => {
  it("exits 1 before it serves, with one fatal line naming each variable and what it expects", async () => {
    const port = await Processes.freePort()
    const server = Processes.spawnServer(port, { TESSERA_SHUTDOWN_GRACE: "soon", TESSERA_RPC_TRACING: "maybe", LOG_LEVEL: "info" })
    expect(await server.exited, server.output()).toBe(1)
    const lines = fatal(server.output())
    expect(lines).toHaveLength(1)
    expect(lines[0]!.message).toContain('TESSERA_SHUTDOWN_GRACE: expected a duration such as "10 seconds"')
    expect(lines[0]!.message).toContain('TESSERA_RPC_TRACING: expected true or false, got "maybe"')
    // Nothing ran: no module started, no database opened.
    expect(server.output()).not.toContain("starting")
  }, 60_000)

  it("PORT=abc: names PORT and the range", async () => {
    const command = Processes.spawnCommand(["serve"], { PORT: "abc" })
    expect(await command.exited, command.output()).toBe(1)
    expect(fatal(command.output()).map((l) => l.message)).toEqual([
      'tessera stopped: invalid configuration: PORT: expected a port number (1-65535), got "abc"'
    ])
  }, 60_000)

  it("a bad LOG_LEVEL is refused in a log line all the same", async () => {
    const command = Processes.spawnCommand(["migrate"], { LOG_LEVEL: "loud" })
    expect(await command.exited, command.output()).toBe(1)
    expect(fatal(command.output()).map((l) => l.message)).toEqual([
      expect.stringContaining('LOG_LEVEL: expected one of all, trace, debug, info, warn, warning, error, fatal, none, got "loud"')
    ])
  }, 60_000)
})
