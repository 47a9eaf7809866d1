/** SQL over the identity schema's users table. Database failures become defects here. */
import { SqlClient, SqlSchema } from "@effect/sql"
import { DateTime, Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { EmailTaken, type Role, User } from "../IdentityApi.ts"

const columns = "id, email, name, role, created_at AS \"createdAt\", password_hash AS \"passwordHash\""

const UserRow = Schema.Struct({ ...User.fields, createdAt: Schema.DateTimeUtcFromDate, passwordHash: Schema.String })

/** A user with the hash of its password, which never leaves this module. */
export interface StoredUser {
  readonly user: User
  readonly passwordHash: string
}

const fromRow = ({ passwordHash, ...user }: typeof UserRow.Type): StoredUser => ({
  user: new User(user, { disableValidation: true }),
  passwordHash
})

export class UsersRepo extends Effect.Service<UsersRepo>()("identity/UsersRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** Stores a new user; EmailTaken when another has the address in any case. */
    const insert = (user: User, passwordHash: string) =>
      sql`INSERT INTO users (id, email, name, password_hash, role, created_at)
          VALUES (${user.id}, ${user.email}, ${user.name}, ${passwordHash}, ${user.role},
                  ${DateTime.toDateUtc(user.createdAt)})`.pipe(
        Effect.asVoid,
        Effect.catchTag("SqlError", (error) =>
          PgError.isUniqueViolation(error, "users_email_key")
            ? Effect.fail(new EmailTaken({ email: user.email }))
            : PgError.die(error))
      )

    const findById = SqlSchema.findOne({
      Request: Schema.String,
      Result: UserRow,
      execute: (id) => sql`SELECT ${sql.literal(columns)} FROM users WHERE id = ${id}`
    })

    const findByEmail = SqlSchema.findOne({
      Request: Schema.String,
      Result: UserRow,
      execute: (email) => sql`SELECT ${sql.literal(columns)} FROM users WHERE lower(email) = lower(${email})`
    })

    return {
      insert,
      findById: (id: string) => findById(id).pipe(Effect.map(Option.map(fromRow)), PgError.orDie),
      /** The user with this address, compared without regard to case. */
      findByEmail: (email: string) => findByEmail(email).pipe(Effect.map(Option.map(fromRow)), PgError.orDie),
      /** Replaces a hash made at an outdated cost. */
      updatePasswordHash: (id: string, passwordHash: string) =>
        sql`UPDATE users SET password_hash = ${passwordHash} WHERE id = ${id}`.pipe(Effect.asVoid, PgError.orDie),
      /** Gives the user another role. */
      setRole: (id: string, role: Role) =>
        sql`UPDATE users SET role = ${role} WHERE id = ${id}`.pipe(Effect.asVoid, PgError.orDie)
    } as const
  })
}) {}
