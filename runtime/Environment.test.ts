import { Config, Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Environment from "./Environment.ts"
import * as Setting from "./Setting.ts"
import * as Settings from "./Settings.ts"

const read = <A>(config: Config.Config<A>, env: Record<string, string | undefined>) =>
  Effect.runPromise(Effect.withConfigProvider(config, Environment.configProvider(env)))

describe("the environment as configuration", () => {
  it("takes an empty or blank variable as unset: the default applies, an optional one is absent", async () => {
    for (const empty of ["", " ", "\t"]) {
      expect(await read(Config.option(Config.redacted("DATABASE_URL")), { DATABASE_URL: empty })).toEqual(Option.none())
      expect(await read(Config.integer("TESSERA_RATE_LIMIT").pipe(Config.withDefault(100)), { TESSERA_RATE_LIMIT: empty })).toBe(100)
      expect(await read(Config.port("PORT").pipe(Config.withDefault(8080)), { PORT: empty })).toBe(8080)
    }
  })

  it("reads a set variable as Effect's own provider does", async () => {
    expect(await read(Config.port("PORT"), { PORT: "8081" })).toBe(8081)
    expect(await read(Config.array(Config.string(), "TESSERA_LIST"), { TESSERA_LIST: "a,b" })).toEqual(["a", "b"])
    const missing = await Effect.runPromise(Effect.either(Effect.withConfigProvider(Config.string("TESSERA_X"), Environment.configProvider({}))))
    expect(missing._tag).toBe("Left")
  })
})

describe("a variable given as a file (<NAME>_FILE)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-env-"))
  const file = (name: string, content: string) => {
    const at = path.join(dir, name)
    fs.writeFileSync(at, content)
    return at
  }

  it("reads the file's content, its one trailing newline dropped, as the variable", async () => {
    const secret = file("secret", "s3cret-with-a-trailing-newline\n")
    expect(await read(Config.string("TESSERA_SERVICE_SECRET"), { TESSERA_SERVICE_SECRET_FILE: secret })).toBe("s3cret-with-a-trailing-newline")
    const crlf = file("url", "postgres://u:p@db:5432/x\r\n")
    expect(await read(Config.string("DATABASE_URL"), { DATABASE_URL_FILE: crlf })).toBe("postgres://u:p@db:5432/x")
  })

  it("takes an empty file as unset, like an empty variable", async () => {
    const empty = file("empty", "\n")
    expect(await read(Config.option(Config.string("AMQP_URL")), { AMQP_URL_FILE: empty })).toEqual(Option.none())
  })

  it("fails the read of the variable when its file cannot be read, naming the variable and the file", async () => {
    const missing = path.join(dir, "no-such-file")
    const result = await Effect.runPromise(Effect.either(Effect.withConfigProvider(
      Config.option(Config.string("TESSERA_SERVICE_SECRET")),
      Environment.configProvider({ TESSERA_SERVICE_SECRET_FILE: missing })
    )))
    expect(result._tag).toBe("Left")
    expect(String(result._tag === "Left" ? result.left : "")).toContain(`TESSERA_SERVICE_SECRET_FILE: cannot read ${missing} (ENOENT)`)
  })

  it("refuses a variable given both ways", async () => {
    const secret = file("both", "x".repeat(40))
    const result = await Effect.runPromise(Effect.either(Effect.withConfigProvider(
      Config.string("TESSERA_SERVICE_SECRET"),
      Environment.configProvider({ TESSERA_SERVICE_SECRET: "y".repeat(40), TESSERA_SERVICE_SECRET_FILE: secret })
    )))
    expect(String(result._tag === "Left" ? result.left : "")).toContain("TESSERA_SERVICE_SECRET and TESSERA_SERVICE_SECRET_FILE are both set")
  })

  it("reaches the settings check: a secret from a file is checked like one from the environment", async () => {
    const short = file("short", "too short")
    const check = Setting.check([Settings.serviceSecret])
    const refused = await Effect.runPromise(Effect.either(Effect.withConfigProvider(check, Environment.configProvider({ TESSERA_SERVICE_SECRET_FILE: short }))))
    expect(refused._tag === "Left" && refused.left._tag === "InvalidConfiguration" ? refused.left.problems : []).toEqual([
      `TESSERA_SERVICE_SECRET: expected ${Settings.serviceSecret.expected}, got 9 characters`
    ])
    const good = file("good", "z".repeat(48) + "\n")
    await Effect.runPromise(Effect.withConfigProvider(check, Environment.configProvider({ TESSERA_SERVICE_SECRET_FILE: good })))
  })
})
