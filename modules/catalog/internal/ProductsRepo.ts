/** SQL over the catalog schema's products table. Database failures become defects here. */
import { SqlClient, SqlSchema } from "@effect/sql"
import { DateTime, Effect, Option, Schema } from "effect"
import * as PgError from "../../../runtime/db/PgError.ts"
import { Product, SkuTaken } from "../CatalogApi.ts"
import * as Cursor from "../../../runtime/schema/Cursor.ts"

const columns = "id, sku, name, description, price_cents AS \"priceCents\", currency, created_at AS \"createdAt\""

const ProductRow = Schema.Struct({ ...Product.fields, createdAt: Schema.DateTimeUtcFromDate })
const fromRow = (row: typeof ProductRow.Type) => new Product(row, { disableValidation: true })
const PlacedRow = Schema.Struct({ ...ProductRow.fields, cursorAt: Schema.String })
const placed = (row: typeof PlacedRow.Type): Cursor.Placed<Product> => ({
  item: fromRow(row),
  position: [row.cursorAt, row.id]
})

/** `%`, `_` and `\` match themselves in a search. */
const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, "\\$&")}%`

export class ProductsRepo extends Effect.Service<ProductsRepo>()("catalog/ProductsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insert = (product: Product) =>
      sql`INSERT INTO products (id, sku, name, description, price_cents, currency, created_at)
          VALUES (${product.id}, ${product.sku}, ${product.name}, ${product.description},
                  ${product.priceCents}, ${product.currency}, ${DateTime.toDateUtc(product.createdAt)})`.pipe(
        Effect.asVoid,
        Effect.catchTag("SqlError", (error) =>
          PgError.isUniqueViolation(error, "products_sku_key")
            ? Effect.fail(new SkuTaken({ sku: product.sku }))
            : PgError.die(error))
      )

    const findById = SqlSchema.findOne({
      Request: Schema.String,
      Result: ProductRow,
      execute: (id) => sql`SELECT ${sql.literal(columns)} FROM products WHERE id = ${id}`
    })

    const search = SqlSchema.findAll({
      Request: Schema.Struct({
        q: Schema.optional(Schema.String),
        after: Schema.optional(Schema.Tuple(Schema.String, Schema.String)),
        limit: Schema.Int
      }),
      Result: PlacedRow,
      execute: ({ after, limit, q }) =>
        sql`SELECT ${sql.literal(columns)}, ${sql.literal(Cursor.atColumn("created_at"))} AS "cursorAt" FROM products
            WHERE ${
          sql.and([
            ...(q === undefined || q === "" ? [] : [
              sql`(sku ILIKE ${likePattern(q)} OR name ILIKE ${likePattern(q)} OR description ILIKE ${
                likePattern(q)
              })`
            ]),
            ...(after === undefined ? [] : [sql`(created_at, id) > (${after[0]}::timestamptz, ${after[1]}::uuid)`])
          ])
        }
            ORDER BY created_at, id
            LIMIT ${limit}`
    })

    return {
      insert,
      findById: (id: string) => findById(id).pipe(Effect.map(Option.map(fromRow)), PgError.orDie),
      /** Up to `limit` products after `after` in (createdAt, id) order, matching `q`, each with its position. */
      search: (query: { readonly q?: string | undefined; readonly after?: Cursor.Position | undefined; readonly limit: number }) =>
        search({
          limit: query.limit,
          ...(query.q === undefined ? {} : { q: query.q }),
          ...(query.after === undefined ? {} : { after: query.after })
        }).pipe(Effect.map((rows) => rows.map(placed)), PgError.orDie)
    } as const
  })
}) {}
