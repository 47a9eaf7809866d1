import { Config, Effect, Either, Option, Redacted } from "effect"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { modules } from "../main.ts"
import * as Environment from "./Environment.ts"
import * as ModuleBorder from "./ModuleBorder.ts"
import * as Setting from "./Setting.ts"
import * as Settings from "./Settings.ts"
import * as Samples from "./testing/SettingSamples.ts"

const registry = Settings.registry(modules)

const within = <A, E>(effect: Effect.Effect<A, E>, env: Record<string, string>) =>
  Effect.runPromise(Effect.either(Effect.withConfigProvider(effect, Environment.configProvider(env))))

const check = (env: Record<string, string>) => within(Setting.check(registry, Settings.rules), env)

const problems = (result: Either.Either<void, unknown>): ReadonlyArray<string> => {
  if (Either.isRight(result)) return []
  expect(result.left).toBeInstanceOf(Setting.InvalidConfiguration)
  return (result.left as Setting.InvalidConfiguration).problems
}

describe("the registry of settings", () => {
  it("names each variable once, and every default is a value its setting accepts", () => {
    const names = registry.map((s) => s.name)
    expect(new Set(names).size).toBe(names.length)
    for (const setting of registry) {
      expect(setting.name).toMatch(/^[A-Z][A-Z0-9_]*$/)
      if (setting.default !== undefined) expect(setting.problem(setting.default), setting.name).toBeUndefined()
    }
  })

  it("holds the build's modules' database URLs and their own settings", () => {
    const names = registry.map((s) => s.name)
    for (const m of modules) {
      if (m.database) expect(names).toContain(`TESSERA_${m.name.toUpperCase()}_DATABASE_URL`)
      for (const s of m.settings) expect(names).toContain(s.name)
    }
    expect(names).toContain("TESSERA_ADMIN_PASSWORD")
  })

  it("is the only way code reads the environment: no Config primitive outside Setting.ts", () => {
    const tree = ModuleBorder.readTree(fileURLToPath(new URL("..", import.meta.url)))
    const primitive = /\bConfig\.(string|integer|number|port|duration|boolean|redacted|secret|url|literal|date|logLevel|nonEmptyString|array|chunk|hashSet|hashMap)\(/
    const readers = [...tree].filter(([file, source]) =>
      !file.endsWith(".test.ts") && !file.startsWith("bench/") && !file.startsWith("runtime/testing/") && primitive.test(source)
    ).map(([file]) => file)
    expect(readers).toEqual(["runtime/Setting.ts"])
  })

  it("accepts the configuration of an unset environment", async () => {
    expect(await check({})).toEqual(Either.right(undefined))
  })
})

describe("every invalid value is refused, naming its variable and what is expected", () => {
  it("sweeps every registered setting with values of its kind it must refuse", async () => {
    const exempt = registry.filter((s) => Samples.invalid(s).length === 0).map((s) => s.name)
    expect(exempt).toEqual(Samples.ACCEPTS_ANY)
    for (const setting of registry) {
      for (const value of Samples.invalid(setting)) {
        const found = problems(await check({ [setting.name]: value }))
        expect(found, `${setting.name}=${JSON.stringify(value)}`).toHaveLength(1)
        expect(found[0]).toMatch(new RegExp(`^${setting.name}: expected ${escape(setting.expected)}, got `))
        const got = found[0]!.slice(found[0]!.indexOf(", got ") + ", got ".length)
        if (setting.display === "secret") expect(got).toMatch(/^\d+ characters?$/)
        // The reader refuses it too: no code path reads the value without the check's judgement.
        expect(Either.isLeft(await within(setting.config, { [setting.name]: value })), setting.name).toBe(true)
      }
    }
  })

  it("quotes a plain value, counts a secret's characters, and shows a URL without its password", async () => {
    expect(problems(await check({ PORT: "abc" }))).toEqual(['PORT: expected a port number (1-65535), got "abc"'])
    expect(problems(await check({ TESSERA_SERVICE_SECRET: "hunter2" }))).toEqual([
      "TESSERA_SERVICE_SECRET: expected at least 32 characters (for example: openssl rand -base64 48), got 7 characters"
    ])
    const [url] = problems(await check({ DATABASE_URL: "mysql://admin:hunter2@db.example/shop" }))
    expect(url).toContain('got "mysql://admin:<redacted>@db.example/shop"')
    expect(url).not.toContain("hunter2")
    const [garbled] = problems(await check({ DATABASE_URL: "postgres://admin:hunter2@[db" }))
    expect(garbled).toContain("got something that is not a URL")
    expect(garbled).not.toContain("hunter2")
  })

  it("names every bad value at once", async () => {
    const found = problems(await check({ PORT: "abc", TESSERA_SHUTDOWN_GRACE: "soon", TESSERA_RPC_TRACING: "maybe" }))
    expect(found.map((p) => p.split(":")[0])).toEqual(["PORT", "TESSERA_SHUTDOWN_GRACE", "TESSERA_RPC_TRACING"])
    expect(found[1]).toContain('a duration such as "10 seconds"')
    expect(found[2]).toContain("true or false")
  })

  it("refuses values that do not fit together once each is valid", async () => {
    expect(problems(await check({ TESSERA_HEADERS_TIMEOUT: "40 seconds", TESSERA_REQUEST_TIMEOUT: "30 seconds" }))).toEqual([
      "TESSERA_HEADERS_TIMEOUT: expected no longer than TESSERA_REQUEST_TIMEOUT"
    ])
  })

  it("reads valid values as the code uses them", async () => {
    const read = <A>(config: Config.Config<A>, env: Record<string, string>) =>
      Effect.runPromise(Effect.withConfigProvider(config, Environment.configProvider(env)))
    expect(await read(Settings.port.config, { PORT: " 8081 " })).toBe(8081)
    expect(await read(Settings.rpcTracing.config, { TESSERA_RPC_TRACING: "off" })).toBe(false)
    expect(await read(Settings.corsOrigins.config, { TESSERA_CORS_ORIGINS: "https://a.example, https://b.example" }))
      .toEqual(["https://a.example", "https://b.example"])
    const url = await read(Settings.databaseUrl.config, { DATABASE_URL: "postgres://u:p@127.0.0.1/db" })
    expect(Option.map(url, Redacted.value)).toEqual(Option.some("postgres://u:p@127.0.0.1/db"))
    expect(await read(Settings.dbAcquireTimeout.config, {})).toEqual(await read(Config.duration("X"), { X: "15 seconds" }))
  })

  it("takes TESSERA_MIGRATIONS_DIR only when it is a directory", async () => {
    const dir = fs.mkdtempSync("/tmp/tessera-settings-")
    try {
      expect(problems(await check({ TESSERA_MIGRATIONS_DIR: dir }))).toEqual([])
      expect(problems(await check({ TESSERA_MIGRATIONS_DIR: `${dir}/missing` }))[0]).toContain("no such directory")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("the effective configuration", () => {
  const report = (env: Record<string, string>) =>
    Effect.runPromise(Effect.withConfigProvider(Setting.report(registry), Environment.configProvider(env)))

  it("says where each value comes from", async () => {
    const entries = new Map((await report({ PORT: "8081", TESSERA_RATE_LIMIT: "" })).map((e) => [e.name, e]))
    expect(entries.get("PORT")).toMatchObject({ source: "environment", value: "8081" })
    expect(entries.get("TESSERA_RATE_LIMIT")).toMatchObject({ source: "default", value: "100" })
    expect(entries.get("DATABASE_URL")).toMatchObject({ source: "unset", value: "" })
    expect([...entries.keys()]).toEqual(registry.map((s) => s.name))
  })

  it("never shows a secret, nor a password in a URL", async () => {
    const marker = "MARKER-2f9c1e7d-never-printed-MARKER"
    const env: Record<string, string> = {}
    for (const setting of registry) {
      if (setting.display === "secret") env[setting.name] = marker
      if (setting.display === "url") env[setting.name] = `postgres://admin:${marker}@db.example:5432/shop?password=${marker}`
    }
    expect(Object.keys(env).length).toBeGreaterThanOrEqual(3)
    const entries = await report(env)
    const table = Setting.table(entries)
    expect(table).not.toContain(marker)
    expect(table).toContain(`TESSERA_SERVICE_SECRET`)
    expect(entries.find((e) => e.name === "DATABASE_URL")?.value)
      .toBe("postgres://admin:<redacted>@db.example:5432/shop?password=<redacted>")
    for (const e of entries) if (Object.hasOwn(env, e.name)) expect(e.source, e.name).toBe("environment")
  })
})

describe("README's configuration table", () => {
  const readme = fs.readFileSync(new URL("../README.md", import.meta.url), "utf8")
  const section = readme.slice(readme.indexOf("## Configure it"), readme.indexOf("\n## ", readme.indexOf("## Configure it") + 1))
  /** Each row's variables (the first cell's backticked names) and its default cell. */
  const rows = section.split("\n").filter((line) => line.startsWith("| `")).map((line) => {
    const cells = line.split("|").map((c) => c.trim())
    return { names: [...cells[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!), default: cells[2]!.replace(/^`|`$/g, "") }
  })
  /** The table documents the per-module database URLs in one row. */
  const moduleUrls = new Set(modules.map((m) => Settings.moduleDatabaseUrl(m.name).name))
  /** ...and each policy setting's per-target form in one row, as `TESSERA_<TARGET>_<suffix>`. */
  const perTarget = new Map(modules.flatMap((m) =>
    Settings.resilience.map((family) =>
      [family.forTarget(m.name).name, family.global.name.replace(/^TESSERA_/, "TESSERA_<TARGET>_")] as const
    )
  ))
  const documented = (name: string) => moduleUrls.has(name) ? "TESSERA_<MODULE>_DATABASE_URL" : perTarget.get(name) ?? name

  it("documents every registered setting, and nothing else, with its default", () => {
    const table = new Map(rows.flatMap((row) => row.names.map((name) => [name, row.default] as const)))
    const registered = new Map(registry.map((s) => [documented(s.name), s.default ?? ""] as const))
    expect([...table.keys()].sort()).toEqual([...registered.keys()].sort())
    for (const [name, value] of registered) expect(table.get(name), name).toBe(value)
  })
})

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
