/**
 * The migrations a release carries in its own code. In the source this is empty and the
 * migrations are read from `migrations/` on disk; the release build (`runtime/release/Build.ts`)
 * replaces this module with one that holds every migration's text, so that a built release (and
 * the single executable) needs no `migrations/` folder beside it.
 */
export interface BundledMigration {
  readonly module: string
  /** The file's name, `NNNN_name.sql`. */
  readonly file: string
  readonly sql: string
}

export const bundled: ReadonlyArray<BundledMigration> | undefined = undefined
