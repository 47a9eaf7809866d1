/**
 * Writes plain data (objects, arrays, strings, numbers, booleans) as block-style YAML, the way
 * compose files and Kubernetes manifests are read by people: keys in the order given, a string
 * quoted (as JSON, which YAML reads alike) only when it could read as something else.
 * What `deploy render` writes is compared byte for byte with the committed files, so the output
 * depends on nothing but the data.
 */

export type Yaml = string | number | boolean | null | ReadonlyArray<Yaml> | { readonly [key: string]: Yaml | undefined }

/** Words YAML 1.1 or 1.2 readers take for booleans or null. */
const RESERVED = /^(true|false|yes|no|on|off|y|n|null|~)$/i
const NUMBER_LIKE = /^[-+]?(\.?[0-9]|\.(inf|nan)$)|^0[xo]/i

const plain = (s: string): boolean =>
  s !== "" && !RESERVED.test(s) && !NUMBER_LIKE.test(s) && /^[A-Za-z0-9/._$][A-Za-z0-9 /._:@=,|+${}()-]*$/.test(s) &&
  !s.endsWith(" ") && !s.includes(": ") && !s.endsWith(":") && !s.includes(" #")

const scalar = (value: string | number | boolean | null): string =>
  typeof value === "string" ? (plain(value) ? value : JSON.stringify(value)) : value === null ? "null" : String(value)

const key = (k: string) => (plain(k) ? k : JSON.stringify(k))

const isEmpty = (value: Yaml): boolean =>
  Array.isArray(value) ? value.length === 0 : typeof value === "object" && value !== null && entries(value).length === 0

const entries = (value: Yaml) =>
  Object.entries(value as Record<string, Yaml | undefined>).filter((entry): entry is [string, Yaml] => entry[1] !== undefined)

const lines = (value: Yaml, indent: string): Array<string> => {
  if (Array.isArray(value)) {
    return value.flatMap((item: Yaml) => {
      if (typeof item === "object" && item !== null && !isEmpty(item)) {
        const inner = lines(item, indent + "  ")
        return [`${indent}- ${inner[0]!.slice(indent.length + 2)}`, ...inner.slice(1)]
      }
      return [`${indent}- ${inline(item)}`]
    })
  }
  if (typeof value === "object" && value !== null) {
    return entries(value).flatMap(([k, v]) =>
      typeof v === "object" && v !== null && !isEmpty(v)
        ? [`${indent}${key(k)}:`, ...lines(v, Array.isArray(v) ? indent + "  " : indent + "  ")]
        : [`${indent}${key(k)}: ${inline(v)}`]
    )
  }
  return [`${indent}${inline(value)}`]
}

const inline = (value: Yaml): string =>
  Array.isArray(value) ? "[]" : typeof value === "object" && value !== null ? "{}" : scalar(value)

/**
 * One YAML document, ending in a newline. Takes any plain data (Kubernetes' API types are
 * interfaces, which TypeScript does not let stand for an index signature): strings, numbers,
 * booleans, null, arrays and objects; `undefined` fields are left out.
 */
export const stringify = (value: unknown, comment?: string): string =>
  `${comment === undefined ? "" : comment.split("\n").map((l) => `# ${l}`.trimEnd()).join("\n") + "\n"}${lines(value as Yaml, "").join("\n")}\n`
