/** SQL over the identity schema's api_keys table. Database failures become defects here. */
import { SqlClient, SqlSchema } from "@effect/sql"
import { DateTime, Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { ApiKey, type ApiKeyId } from "../IdentityApi.ts"

const columns = "id, name, role, created_at AS \"createdAt\", revoked_at AS \"revokedAt\""

const ApiKeyRow = Schema.Struct({
  ...ApiKey.fields,
  createdAt: Schema.DateTimeUtcFromDate,
  revokedAt: Schema.NullOr(Schema.DateTimeUtcFromDate)
})
const fromRow = (row: typeof ApiKeyRow.Type) => new ApiKey(row, { disableValidation: true })

export class ApiKeysRepo extends Effect.Service<ApiKeysRepo>()("identity/ApiKeysRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const findByHash = SqlSchema.findOne({
      Request: Schema.String,
      Result: ApiKeyRow,
      execute: (keyHash) => sql`SELECT ${sql.literal(columns)} FROM api_keys WHERE key_hash = ${keyHash}`
    })

    const findById = SqlSchema.findOne({
      Request: Schema.String,
      Result: ApiKeyRow,
      execute: (id) => sql`SELECT ${sql.literal(columns)} FROM api_keys WHERE id = ${id}`
    })

    const list = SqlSchema.findAll({
      Request: Schema.Void,
      Result: ApiKeyRow,
      execute: () => sql`SELECT ${sql.literal(columns)} FROM api_keys ORDER BY created_at DESC, id DESC`
    })

    const revoke = SqlSchema.findOne({
      Request: Schema.Struct({ id: Schema.String, at: Schema.DateTimeUtcFromDate }),
      Result: ApiKeyRow,
      execute: ({ at, id }) =>
        sql`UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ${at}) WHERE id = ${id}
            RETURNING ${sql.literal(columns)}`
    })

    return {
      /** Stores a key by the hash of its secret. */
      insert: (apiKey: ApiKey, keyHash: string) =>
        sql`INSERT INTO api_keys (id, name, role, key_hash, created_at)
            VALUES (${apiKey.id}, ${apiKey.name}, ${apiKey.role}, ${keyHash}, ${DateTime.toDateUtc(apiKey.createdAt)})`.pipe(
          Effect.asVoid,
          PgError.orDie
        ),
      findByHash: (keyHash: string) => findByHash(keyHash).pipe(Effect.map(Option.map(fromRow)), PgError.orDie),
      findById: (id: ApiKeyId) => findById(id).pipe(Effect.map(Option.map(fromRow)), PgError.orDie),
      /** Every key, newest first. */
      list: list(undefined).pipe(Effect.map((rows) => rows.map(fromRow)), PgError.orDie),
      /** Marks the key revoked at `at` unless it already is; `None` when no key has the id. */
      revoke: (id: string, at: DateTime.Utc) => revoke({ id, at }).pipe(Effect.map(Option.map(fromRow)), PgError.orDie)
    } as const
  })
}) {}
