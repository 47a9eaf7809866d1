/**
 * `GET /v1/admin/dead-letters` and `POST /v1/admin/dead-letters/{id}/replay` (admins only): the
 * dead letters of every module of the build that subscribes to events, wherever each runs. The
 * gateway asks each subscriber module through its client (DeadLetters.ts: the runtime's calls in
 * every subscriber's contract) and merges their pages, newest first.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiError, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Context, Effect, Schema } from "effect"
import * as Auth from "../gateway/Auth.ts"
import * as Problem from "../gateway/Problem.ts"
import * as Integer from "../schema/Integer.ts"
import * as Text from "../schema/Text.ts"
import { CallError } from "../transport/CallError.ts"
import * as DeadLetters from "./DeadLetters.ts"

/** The subscriber modules of the build and their clients (Host.ts provides them to the gateway). */
export class Subscribers extends Context.Tag("tessera/DeadLetters/Subscribers")<
  Subscribers,
  ReadonlyArray<{ readonly module: string; readonly client: DeadLetters.Client }>
>() {}

/** One page of dead letters, newest first; `nextCursor` is null on the last page. */
export class DeadLetterPage extends Schema.Class<DeadLetterPage>("messaging/DeadLetterPage")({
  items: Schema.Array(DeadLetters.DeadLetter),
  nextCursor: Schema.NullOr(Schema.String)
}) {}

const DEFAULT_LIMIT = 20

const Search = Schema.Struct({
  state: Schema.optionalWith(Text.oneOf(DeadLetters.State), { exact: true }),
  limit: Schema.optionalWith(Integer.pageSize, { exact: true }),
  cursor: Schema.optionalWith(Text.line({ maxLength: 120 }), { exact: true })
}).annotations({ parseOptions: { errors: "all" } })

const idPath = HttpApiSchema.param("id", Text.line({ maxLength: 120 }))

export class DeadLettersHttp extends HttpApiGroup.make("deadLetters")
  .add(
    HttpApiEndpoint.get("list", "/admin/dead-letters")
      .setUrlParams(Search)
      .addSuccess(DeadLetterPage)
      .middleware(Auth.AdminOnly)
      .annotate(
        OpenApi.Summary,
        "Messages a subscriber's handler failed TESSERA_EVENTS_MAX_DELIVERIES times, across every subscriber module, newest first; " +
          "filter by state (admin)"
      )
  )
  .add(
    HttpApiEndpoint.post("replay")`/admin/dead-letters/${idPath}/replay`
      .addSuccess(DeadLetters.DeadLetter, { status: 202 })
      .addError(Problem.schema(DeadLetters.DeadLetterNotFound))
      .addError(Problem.schema(DeadLetters.DeadLetterAlreadyReplayed))
      .middleware(Auth.AdminOnly)
      .annotate(
        OpenApi.Summary,
        "Hand a dead letter back to its subscriber's handler (applied at most once; one that fails again becomes a new dead letter) (admin)"
      )
  )
  .prefix("/v1")
{}

/** A cursor is the position of the last item of a page: `<dead-at µs>.<subscriber>.<n>`. */
const cursorOf = (position: DeadLetters.After) => `${position.deadAtMicros}.${position.subscriber}.${position.seq}`
const CURSOR = /^([0-9]{1,18})\.([a-z][a-z0-9_]{0,62})\.([1-9][0-9]{0,17})$/
const parseCursor = (cursor: string): DeadLetters.After | undefined => {
  const match = CURSOR.exec(cursor)
  return match === null ? undefined : { deadAtMicros: match[1]!, subscriber: match[2]!, seq: match[3]! }
}

/** A cursor this API did not hand out is a bad query parameter: a validation problem naming it. */
const invalidCursor = Effect.fail(
  new HttpApiError.HttpApiDecodeError({
    issues: [{ _tag: "Type", path: ["cursor"], message: "the cursor is not one this API returned" }],
    message: "cursor: the cursor is not one this API returned"
  })
)

/**
 * The gateway checked the caller (and the admin role) already: a module refusing it as well is a
 * bug, a defect; so is a transport failure (answered 503, 502 or 504 by its kind).
 */
const checked = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e): e is Extract<E, { readonly _tag: "Unauthenticated" | "Forbidden" } | CallError> =>
      e instanceof CallError || ["Unauthenticated", "Forbidden"].includes((e as { _tag?: string })._tag ?? ""),
    Effect.die
  ) as Effect.Effect<A, Exclude<E, { readonly _tag: "Unauthenticated" | "Forbidden" } | CallError>, R>

/** Its handlers, for the composed API named `apiId` (Gateway.API_ID). */
export const layer = (apiId: string) =>
  HttpApiBuilder.group(
    HttpApi.make(apiId).add(DeadLettersHttp),
    "deadLetters",
    (handlers) =>
      Effect.map(Subscribers, (subscribers) =>
        handlers
          .handle("list", ({ urlParams }) =>
            Effect.gen(function*() {
              const after = urlParams.cursor === undefined ? undefined : parseCursor(urlParams.cursor)
              if (urlParams.cursor !== undefined && after === undefined) return yield* invalidCursor
              const limit = urlParams.limit ?? DEFAULT_LIMIT
              // Each module's first limit + 1 after the cursor hold the first limit + 1 of all.
              const pages = yield* Effect.forEach(
                subscribers,
                ({ client }) =>
                  checked(client.DeadLetters.list({
                    limit: limit + 1,
                    ...(urlParams.state === undefined ? {} : { state: urlParams.state }),
                    ...(after === undefined ? {} : { after })
                  })),
                { concurrency: "unbounded" }
              )
              const merged = pages.flatMap((page) => page.items).sort((a, b) => DeadLetters.compare(a.position, b.position))
              const page = merged.slice(0, limit)
              return new DeadLetterPage({
                items: page.map((item) => item.deadLetter),
                nextCursor: merged.length > limit ? cursorOf(page[page.length - 1]!.position) : null
              })
            }))
          .handle("replay", ({ path }) =>
            Effect.gen(function*() {
              const id = DeadLetters.parseId(path.id)
              const subscriber = id === undefined ? undefined : subscribers.find((s) => s.module === id.subscriber)
              if (id === undefined || subscriber === undefined) return yield* new DeadLetters.DeadLetterNotFound({ id: Text.quote(path.id) })
              return yield* checked(subscriber.client.DeadLetters.replay({ seq: id.seq }))
            }))
      )
  )
