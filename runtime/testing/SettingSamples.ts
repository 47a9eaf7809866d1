/**
 * Values each setting must refuse, derived from what its kind accepts (Setting.ts), for the
 * sweeps of Settings.test.ts and main.config.test.ts. A setting that accepts any string is
 * exempt, and listed in `ACCEPTS_ANY` so that a new one is noticed.
 */
import { Duration } from "effect"
import type * as Setting from "../Setting.ts"

/** Settings that accept any string: TESSERA_DATA_DIR is any path (the directory is created). */
export const ACCEPTS_ANY = ["TESSERA_DATA_DIR"]

const millis = (d: Duration.Duration) => Duration.toMillis(d)

/** Values `setting` must refuse (none only for a `Text` setting). */
export const invalid = (setting: Setting.Setting.Any): ReadonlyArray<string> => {
  const kind = setting.kind
  switch (kind._tag) {
    case "Port":
      return ["abc", "0", "65536", "80.5", "-1", "8080x", "1e3"]
    case "Integer":
      return [
        "abc",
        "1.5",
        "1e3",
        "0x10",
        String(kind.min - 1),
        kind.max === undefined ? "99999999999999999999" : String(kind.max + 1)
      ]
    case "Number":
      return ["abc", "1,5", "Infinity", kind.exclusiveMin ? String(kind.min) : String(kind.min - 1)]
    case "Duration":
      return [
        "soon",
        "10",
        "10s",
        "10 fortnights",
        "-5 seconds",
        "Infinity",
        kind.exclusiveMin ? `${millis(kind.min)} millis` : `${millis(kind.min) - 1} millis`
      ]
    case "Boolean":
      return ["maybe", "2", "truthy"]
    case "Choice":
      return ["nonsense", `${kind.options[0]}x`]
    case "Secret":
      return ["x", "y".repeat(kind.minLength - 1)]
    case "PostgresUrl":
      return ["not a url", "mysql://user:pw@127.0.0.1/db", "http://127.0.0.1:5432/db", "postgres:///db"]
    case "Custom":
      return kind.invalid
    case "Text":
      return []
  }
}

/** One refused value per setting, for a process started with all of them at once. */
export const oneInvalidEach = (settings: ReadonlyArray<Setting.Setting.Any>): Record<string, string> =>
  Object.fromEntries(settings.flatMap((s) => invalid(s).slice(0, 1).map((value) => [s.name, value] as const)))
