/**
 * Where the `tessera` command reads its configuration: the process environment, in which a
 * variable set to the empty string (or to whitespace only) counts as unset. Compose files and
 * Kubernetes manifests pass empty values all the time: `DATABASE_URL=` means "no database URL"
 * (the embedded database), `TESSERA_RATE_LIMIT=` the default limit, never a value to parse.
 *
 * Any variable may instead be given as a file: `<NAME>_FILE=/run/secrets/name` sets `<NAME>` to
 * the file's content, its one trailing newline dropped (compose's `secrets:` and Kubernetes'
 * mounted Secrets hand secrets over as files, which keeps them out of `ps e`, `docker inspect`
 * and crash dumps of the environment). A file that cannot be read, or a variable given both
 * ways, fails the read of `<NAME>`, naming both.
 */
import { ConfigError, ConfigProvider, Effect } from "effect"
import * as fs from "node:fs"

/** The suffix that makes a variable name a file holding another variable's value. */
export const FILE_SUFFIX = "_FILE"

const isSet = (value: string | undefined): value is string => value !== undefined && value.trim() !== ""

/**
 * The environment's values, `<NAME>_FILE` read into `<NAME>`, and the problems met doing so
 * (keyed by `<NAME>`): what the provider serves.
 */
export const resolve = (
  env: Readonly<Record<string, string | undefined>>,
  readFile: (path: string) => string = (path) => fs.readFileSync(path, "utf8")
): { readonly values: ReadonlyMap<string, string>; readonly problems: ReadonlyMap<string, string> } => {
  const values = new Map(Object.entries(env).filter((entry): entry is [string, string] => isSet(entry[1])))
  const problems = new Map<string, string>()
  for (const [key, file] of [...values]) {
    if (!key.endsWith(FILE_SUFFIX) || key.length === FILE_SUFFIX.length) continue
    const name = key.slice(0, -FILE_SUFFIX.length)
    values.delete(key)
    if (isSet(env[name])) {
      problems.set(name, `${name} and ${key} are both set: give the value one way`)
      continue
    }
    try {
      const content = readFile(file.trim()).replace(/\r?\n$/, "")
      if (isSet(content)) values.set(name, content)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message
      problems.set(name, `${key}: cannot read ${file.trim()} (${code})`)
    }
  }
  return { values, problems }
}

/** The environment as a ConfigProvider, empty values left out (Effect's `fromEnv` reads them as set). */
export const configProvider = (env: Readonly<Record<string, string | undefined>> = process.env): ConfigProvider.ConfigProvider => {
  const { problems, values } = resolve(env)
  // As `ConfigProvider.fromEnv` reads it.
  const base = ConfigProvider.fromMap(new Map(values), { pathDelim: "_", seqDelim: "," })
  if (problems.size === 0) return base
  return ConfigProvider.fromFlat(ConfigProvider.makeFlat({
    load: (path, config, split) => {
      const problem = problems.get(path.join("_"))
      return problem === undefined ? base.flattened.load(path, config, split) : Effect.fail(ConfigError.InvalidData([...path], problem))
    },
    enumerateChildren: (path) => base.flattened.enumerateChildren(path),
    patch: base.flattened.patch
  }))
}
