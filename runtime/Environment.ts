/**
 * Where the `tessera` command reads its configuration: the process environment, in which a
 * variable set to the empty string (or to whitespace only) counts as unset. Compose files and
 * Kubernetes manifests pass empty values all the time: `DATABASE_URL=` means "no database URL"
 * (the embedded database), `TESSERA_RATE_LIMIT=` the default limit, never a value to parse.
 */
import { ConfigProvider } from "effect"

/** The environment as a ConfigProvider, empty values left out (Effect's `fromEnv` reads them as set). */
export const configProvider = (env: Readonly<Record<string, string | undefined>> = process.env): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromMap(
    new Map(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1].trim() !== "")),
    // As `ConfigProvider.fromEnv` reads it.
    { pathDelim: "_", seqDelim: "," }
  )
