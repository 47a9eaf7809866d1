import { Config, Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import * as Environment from "./Environment.ts"

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
