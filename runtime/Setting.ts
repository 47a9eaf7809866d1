/**
 * A setting: one environment variable, declared once with what it accepts, its default, how it
 * is shown and how it is parsed. Every part of the system reads its configuration through its
 * declared settings (`config`), so that the whole configuration can be checked at start, before
 * anything runs (`check`: every bad value at once, each named with what is expected), printed
 * (`report`, `tessera config`) and enumerated by tests.
 *
 * Values are parsed here rather than with Effect's `Config.integer`, `Config.duration`, ... so
 * that a refusal reads the same for every setting (`PORT: expected a port number (1-65535), got
 * "abc"`) and never quotes a secret. The environment is read through Effect's `Config` (the
 * provider of `Environment.ts`), so tests set it with `ConfigProvider.fromMap`.
 */
import { Config, ConfigError, Data, Duration, Effect, Either, Option, Redacted } from "effect"
import * as fs from "node:fs"

/**
 * What a setting accepts, for tests to derive values it must refuse. `Text` accepts any string
 * (a path that is created when missing); `Custom` lists refused values itself.
 */
export type Kind =
  | { readonly _tag: "Port" }
  | { readonly _tag: "Integer"; readonly min: number; readonly max?: number }
  | { readonly _tag: "Number"; readonly min: number; readonly exclusiveMin: boolean }
  | { readonly _tag: "Duration"; readonly min: Duration.Duration; readonly exclusiveMin: boolean }
  | { readonly _tag: "Boolean" }
  | { readonly _tag: "Choice"; readonly options: ReadonlyArray<string> }
  | { readonly _tag: "Secret"; readonly minLength: number }
  | { readonly _tag: "PostgresUrl" }
  | { readonly _tag: "Text" }
  | { readonly _tag: "Custom"; readonly invalid: ReadonlyArray<string> }

/** How a value is shown: as is, never (`<redacted>`), or as a URL whose password is redacted. */
export type Display = "plain" | "secret" | "url"

export const REDACTED = "<redacted>"

export interface Setting<A> {
  readonly name: string
  /** One line: what it sets. */
  readonly description: string
  /** What a valid value looks like, as refusals say it: "a port number (1-65535)". */
  readonly expected: string
  readonly kind: Kind
  readonly display: Display
  /** The default as it would be written in the environment; `undefined`: none (unset is allowed). */
  readonly default: string | undefined
  /** Why `raw` is refused, as one line naming the variable; `undefined` when it is accepted. */
  readonly problem: (raw: string) => string | undefined
  /** The value: the default when unset (or `Option.none()` for a setting without one). */
  readonly config: Config.Config<A>
}

export declare namespace Setting {
  export type Any = Setting<any>
}

/** The configuration was refused: every bad value, each naming its variable. */
export class InvalidConfiguration extends Data.TaggedError("InvalidConfiguration")<{
  readonly problems: ReadonlyArray<string>
}> {
  override get message() {
    return `invalid configuration: ${this.problems.join("; ")}`
  }
}

/** A parse: the value, or a detail to add to "expected ..., got ..." (empty: nothing to add). */
export type Parse<A> = (raw: string) => Either.Either<A, string>

const refuse = (detail = "") => Either.left(detail)

/** `raw` as a refusal may quote it: never a secret, a URL without its password. */
const shownInProblem = (display: Display, raw: string): string => {
  switch (display) {
    case "secret":
      return `${raw.length} character${raw.length === 1 ? "" : "s"}`
    case "url": {
      const redacted = redactUrl(raw)
      return redacted === undefined ? "something that is not a URL" : JSON.stringify(redacted)
    }
    case "plain":
      return JSON.stringify(raw)
  }
}

/** A URL with its password (in the user info or a `password` parameter) replaced; `undefined` if not a URL. */
export const redactUrl = (raw: string): string | undefined => {
  if (!URL.canParse(raw)) return undefined
  const url = new URL(raw)
  // Written out by hand: URL's setters would percent-encode the marker.
  const auth = url.username === "" && url.password === ""
    ? ""
    : `${url.username}${url.password === "" ? "" : `:${REDACTED}`}@`
  const params = [...url.searchParams].map(([key, value]) =>
    `${encodeURIComponent(key)}=${key.toLowerCase() === "password" ? REDACTED : encodeURIComponent(value)}`
  )
  const host = url.host === "" ? "" : `//${auth}${url.host}`
  return `${url.protocol}${host}${url.pathname}${params.length > 0 ? `?${params.join("&")}` : ""}${url.hash}`
}

/** How a value is shown by `tessera config`. */
export const shown = (setting: Setting.Any, raw: string): string =>
  setting.display === "secret" ? REDACTED : setting.display === "url" ? (redactUrl(raw) ?? REDACTED) : raw

/** A setting's declaration: what `make` and `optional` build from. */
export interface Spec<A> {
  readonly name: string
  readonly description: string
  readonly expected: string
  readonly kind: Kind
  readonly display?: Display
  readonly parse: Parse<A>
}

const problemOf = <A>(spec: Spec<A>) => (raw: string): string | undefined => {
  const parsed = spec.parse(raw)
  if (Either.isRight(parsed)) return undefined
  const detail = parsed.left === "" ? "" : ` (${parsed.left})`
  return `${spec.name}: expected ${spec.expected}, got ${shownInProblem(spec.display ?? "plain", raw)}${detail}`
}

const parsed = <A>(spec: Spec<A>) => (raw: string) =>
  Either.mapLeft(spec.parse(raw), () => ConfigError.InvalidData([], problemOf(spec)(raw)!))

/** A setting with a default: its value is always there. The default must parse (tests check it). */
export const make = <A>(spec: Spec<A> & { readonly default: string }): Setting<A> => ({
  name: spec.name,
  description: spec.description,
  expected: spec.expected,
  kind: spec.kind,
  display: spec.display ?? "plain",
  default: spec.default,
  problem: problemOf(spec),
  config: Config.string(spec.name).pipe(Config.withDefault(spec.default), Config.mapOrFail(parsed(spec)))
})

/** A setting without a default: unset is allowed and means `Option.none()`. */
export const optional = <A>(spec: Spec<A>): Setting<Option.Option<A>> => ({
  name: spec.name,
  description: spec.description,
  expected: spec.expected,
  kind: spec.kind,
  display: spec.display ?? "plain",
  default: undefined,
  problem: problemOf(spec),
  config: Config.option(Config.string(spec.name).pipe(Config.mapOrFail(parsed(spec))))
})

// Parsers of the common kinds. Numbers are plain decimal digits: `1e3`, `0x10` or `12px` are
// refused rather than read as something the operator may not have meant.

const INTEGER = /^-?\d+$/
const DECIMAL = /^\d+(\.\d+)?$/

export const parsePort: Parse<number> = (raw) => {
  const text = raw.trim()
  const n = INTEGER.test(text) ? Number(text) : NaN
  return n >= 1 && n <= 65535 ? Either.right(n) : refuse()
}

export const parseInteger = (min: number, max?: number): Parse<number> => (raw) => {
  const text = raw.trim()
  const n = INTEGER.test(text) ? Number(text) : NaN
  return Number.isSafeInteger(n) && n >= min && (max === undefined || n <= max) ? Either.right(n) : refuse()
}

export const parseNumber = (min: number, exclusiveMin: boolean): Parse<number> => (raw) => {
  const text = raw.trim()
  const n = DECIMAL.test(text) ? Number(text) : NaN
  return Number.isFinite(n) && (exclusiveMin ? n > min : n >= min) ? Either.right(n) : refuse()
}

export const parseDuration = (min: Duration.Duration, exclusiveMin: boolean): Parse<Duration.Duration> => (raw) => {
  // Effect's own format ("10 seconds", "1500 millis"), as `Config.duration` reads it.
  // Effect reads "-5 seconds" as zero: a negative duration is refused here instead.
  const text = raw.trim()
  if (text.startsWith("-")) return refuse("negative")
  const decoded = Duration.decodeUnknown(text)
  if (Option.isNone(decoded) || !Duration.isFinite(decoded.value)) return refuse()
  const ok = exclusiveMin ? Duration.greaterThan(decoded.value, min) : Duration.greaterThanOrEqualTo(decoded.value, min)
  return ok ? Either.right(decoded.value) : refuse()
}

const TRUE = ["true", "yes", "on", "1"]
const FALSE = ["false", "no", "off", "0"]

export const parseBoolean: Parse<boolean> = (raw) => {
  const text = raw.trim().toLowerCase()
  return TRUE.includes(text) ? Either.right(true) : FALSE.includes(text) ? Either.right(false) : refuse()
}

/** `postgres://` or `postgresql://` with a host: what @effect/sql-pg connects to. */
export const parsePostgresUrl: Parse<Redacted.Redacted<string>> = (raw) => {
  const text = raw.trim()
  if (!URL.canParse(text)) return refuse()
  const url = new URL(text)
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") return refuse(`scheme ${url.protocol}`)
  if (url.hostname === "") return refuse("no host")
  return Either.right(Redacted.make(text))
}

/** An existing directory. */
export const parseDirectory: Parse<string> = (raw) => {
  try {
    return fs.statSync(raw).isDirectory() ? Either.right(raw) : refuse("not a directory")
  } catch {
    return refuse("no such directory")
  }
}

/** A port number. */
export const port = (spec: { readonly name: string; readonly description: string; readonly default: string }) =>
  make({ ...spec, expected: "a port number (1-65535)", kind: { _tag: "Port" }, parse: parsePort })

/** An integer from `min` (to `max`), as a declaration. */
export const integerSpec = (
  spec: { readonly name: string; readonly description: string; readonly min: number; readonly max?: number }
): Spec<number> => ({
  name: spec.name,
  description: spec.description,
  expected: spec.max === undefined
    ? `a whole number of at least ${spec.min}`
    : `a whole number from ${spec.min} to ${spec.max}`,
  kind: { _tag: "Integer", min: spec.min, ...(spec.max === undefined ? {} : { max: spec.max }) },
  parse: parseInteger(spec.min, spec.max)
})

/** An integer from `min` (to `max`). */
export const integer = (
  spec: { readonly name: string; readonly description: string; readonly default: string; readonly min: number; readonly max?: number }
) => make({ ...integerSpec(spec), default: spec.default })

/** A decimal number above (or from) `min`. */
export const number = (
  spec: { readonly name: string; readonly description: string; readonly default: string; readonly min: number; readonly exclusiveMin: boolean }
) =>
  make({
    ...spec,
    expected: `a number ${spec.exclusiveMin ? "above" : "of at least"} ${spec.min}`,
    kind: { _tag: "Number", min: spec.min, exclusiveMin: spec.exclusiveMin },
    parse: parseNumber(spec.min, spec.exclusiveMin)
  })

/** A duration in Effect's format, longer than `min` (or at least `min`), as a declaration. */
export const durationSpec = (
  spec: {
    readonly name: string
    readonly description: string
    readonly min: Duration.Duration
    readonly exclusiveMin: boolean
  }
): Spec<Duration.Duration> => ({
  name: spec.name,
  description: spec.description,
  expected: `a duration such as "10 seconds" or "1500 millis" (units: millis, seconds, minutes, hours, days, weeks), ${
    spec.exclusiveMin ? "longer than" : "at least"
  } ${Duration.isZero(spec.min) ? "zero" : Duration.format(spec.min)}`,
  kind: { _tag: "Duration", min: spec.min, exclusiveMin: spec.exclusiveMin },
  parse: parseDuration(spec.min, spec.exclusiveMin)
})

/** A duration in Effect's format, longer than `min` (or at least `min`). */
export const duration = (
  spec: {
    readonly name: string
    readonly description: string
    readonly default: string
    readonly min: Duration.Duration
    readonly exclusiveMin: boolean
  }
) => make({ ...durationSpec(spec), default: spec.default })

/**
 * A setting for every target of something (each dependency a process calls): `global`, with
 * its default, read when no per-target value is set; `explicit`, the same variable as set (none
 * when unset, so that a declared default in between can apply); and `forTarget`, the variable
 * `TESSERA_<TARGET>_<suffix>` that overrides it for one target.
 */
export interface Family<A> {
  readonly global: Setting<A>
  readonly explicit: Config.Config<Option.Option<A>>
  readonly forTarget: (target: string) => Setting<Option.Option<A>>
}

/** `TESSERA_<TARGET>_<suffix>`: the target upper-cased, anything but letters and digits as `_`. */
export const targetName = (target: string, suffix: string) =>
  `TESSERA_${target.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_${suffix}`

/** A family of settings (`Family`) from one declaration; `spec.name` is `TESSERA_<suffix>`. */
export const family = <A>(spec: Spec<A> & { readonly default: string }): Family<A> => {
  const suffix = spec.name.replace(/^TESSERA_/, "")
  return {
    global: make(spec),
    explicit: optional(spec).config,
    forTarget: (target) => optional({ ...spec, name: targetName(target, suffix), description: `${spec.description}, for calls to ${target}` })
  }
}

/** true or false (also yes/no, on/off, 1/0). */
export const boolean = (spec: { readonly name: string; readonly description: string; readonly default: string }) =>
  make({ ...spec, expected: "true or false", kind: { _tag: "Boolean" }, parse: parseBoolean })

/** One of `options` (case ignored). */
export const choice = <A>(
  spec: { readonly name: string; readonly description: string; readonly default: string; readonly options: Readonly<Record<string, A>> }
) => {
  const options = Object.keys(spec.options)
  return make({
    ...spec,
    expected: `one of ${options.join(", ")}`,
    kind: { _tag: "Choice", options },
    parse: (raw) => {
      const key = raw.trim().toLowerCase()
      return Object.hasOwn(spec.options, key) ? Either.right(spec.options[key]!) : refuse()
    }
  })
}

/** A secret of at least `minLength` characters: never shown, never quoted. */
export const secret = (
  spec: { readonly name: string; readonly description: string; readonly minLength: number; readonly hint?: string }
) =>
  optional({
    ...spec,
    expected: `at least ${spec.minLength} characters${spec.hint ? ` (${spec.hint})` : ""}`,
    kind: { _tag: "Secret", minLength: spec.minLength },
    display: "secret",
    parse: (raw) => raw.length >= spec.minLength ? Either.right(Redacted.make(raw)) : refuse()
  })

/** A PostgreSQL admin URL: shown with its password redacted. */
export const postgresUrl = (spec: { readonly name: string; readonly description: string }) =>
  optional({
    ...spec,
    expected: "a PostgreSQL URL such as postgres://user:password@host:5432/database",
    kind: { _tag: "PostgresUrl" },
    display: "url",
    parse: parsePostgresUrl
  })

/** Where each value comes from. */
export type Source = "environment" | "default" | "unset"

export interface Entry {
  readonly name: string
  readonly source: Source
  /** The value as `tessera config` shows it (secrets redacted); empty when unset. */
  readonly value: string
  /** Why the value is refused, naming the variable. */
  readonly problem: string | undefined
}

/** The variable as set, if set (the provider decides what "set" means: `Environment.ts`). */
const raw = (name: string) => Config.option(Config.string(name))

/** The effective configuration: every setting, its value as shown and where it comes from. */
export const report = (settings: ReadonlyArray<Setting.Any>): Effect.Effect<ReadonlyArray<Entry>, ConfigError.ConfigError> =>
  Effect.forEach(settings, (setting) =>
    Effect.map(raw(setting.name), (set): Entry =>
      Option.match(set, {
        onSome: (value) => ({
          name: setting.name,
          source: "environment",
          value: shown(setting, value),
          problem: setting.problem(value)
        }),
        onNone: () =>
          setting.default === undefined
            ? { name: setting.name, source: "unset", value: "", problem: undefined }
            : { name: setting.name, source: "default", value: shown(setting, setting.default), problem: undefined }
      })))

/** The report as `tessera config` prints it: one line per setting, name, source and value. */
export const table = (entries: ReadonlyArray<Entry>): string => {
  const width = Math.max(...entries.map((e) => e.name.length)) + 2
  const sourceOf = (e: Entry) => e.problem === undefined ? e.source : `${e.source} (invalid)`
  const sourceWidth = Math.max(...entries.map((e) => sourceOf(e).length)) + 2
  return entries.map((e) => `${e.name.padEnd(width)}${sourceOf(e).padEnd(sourceWidth)}${e.value}`.trimEnd()).join("\n")
}

/** A rule between settings: the problem, naming the variables, when their values do not fit together. */
export type Rule = Config.Config<Option.Option<string>>

/**
 * Fails with every refused value at once, each naming its variable and what it expects; then,
 * when every value is valid, with every broken rule.
 */
export const check = (
  settings: ReadonlyArray<Setting.Any>,
  rules: ReadonlyArray<Rule> = []
): Effect.Effect<void, InvalidConfiguration | ConfigError.ConfigError> =>
  Effect.gen(function*() {
    const entries = yield* report(settings)
    const problems = entries.flatMap((entry) => entry.problem === undefined ? [] : [entry.problem])
    if (problems.length === 0) {
      for (const rule of rules) problems.push(...Option.toArray(yield* rule))
    }
    if (problems.length > 0) return yield* new InvalidConfiguration({ problems })
  })
