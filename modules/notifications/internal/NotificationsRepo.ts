/** SQL over the notifications schema. Database failures become defects here. */
import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"
import { Notification } from "../NotificationsApi.ts"
import type { Message } from "./Messages.ts"

const decodeRows = Schema.decodeUnknown(Schema.Array(Schema.Struct({
  ...Notification.fields,
  createdAt: Schema.DateTimeUtcFromDate,
  cursorAt: Schema.String
})))

/**
 * Records `message` under `id` (the id of the event it was made from); `false` when that event is
 * recorded already. Runs in the transaction of the delivery that applies the event.
 */
export const insert = (id: string, message: Message) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`INSERT INTO notifications (id, customer_id, kind, order_id, subject, body)
        VALUES (${id}, ${message.customerId}, ${message.kind}, ${message.orderId}, ${message.subject}, ${message.body})
        ON CONFLICT (id) DO NOTHING RETURNING id`).pipe(Effect.map((rows) => rows.length === 1), PgError.orDie)

export class NotificationsRepo extends Effect.Service<NotificationsRepo>()("notifications/NotificationsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** Up to `limit` of the customer's notifications before `before` in (createdAt, id) order, newest first, each with its position. */
    const list = (customerId: string, before: Cursor.Position | undefined, limit: number) =>
      sql`SELECT id, kind, order_id AS "orderId", subject, body, created_at AS "createdAt",
                 ${sql.literal(Cursor.atColumn("created_at"))} AS "cursorAt"
          FROM notifications
          WHERE customer_id = ${customerId}
            ${before === undefined ? sql`` : sql`AND (created_at, id) < (${before[0]}::timestamptz, ${before[1]}::uuid)`}
          ORDER BY created_at DESC, id DESC
          LIMIT ${limit}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.map((rows) =>
          rows.map(({ cursorAt, ...row }): Cursor.Placed<Notification> => ({
            item: new Notification(row, { disableValidation: true }),
            position: [cursorAt, row.id]
          }))
        ),
        PgError.orDie
      )

    return { list } as const
  })
}) {}
