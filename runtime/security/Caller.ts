/**
 * Who a call is made for: the user or API key the gateway authenticated. The identity travels
 * with every call between modules as RPC headers, in process and across processes alike, so a
 * module can enforce ownership itself (`Caller.requireCaller(headers)` in a handler). Across processes
 * these headers are trusted only because the RPC endpoint first checks the calling process's
 * service credential (see `ServiceCredential`).
 *
 * A caller is a user (from an access token), an API key, or a module acting on its own account
 * (`service`, e.g. the order saga calling payments): the last exists only on calls between
 * modules, never from a credential presented at the gateway (the edge refuses one), and it gets
 * rights by being named in a check (`requireAdminOrService(headers, "orders")`), never by role.
 */
import { Headers, HttpApiSchema } from "@effect/platform"
import { RpcClient } from "@effect/rpc"
import { Context, Effect, Option, Schema } from "effect"

export const Role = Schema.Literal("customer", "admin")
export type Role = typeof Role.Type

/**
 * A user (from an access token), a machine client (from an API key), or a module calling on its
 * own account (`Caller.service`, only between modules).
 */
export const CallerKind = Schema.Literal("user", "apiKey", "service")

export class Caller extends Schema.Class<Caller>("tessera/Caller")({
  kind: CallerKind,
  /** The user's id, the API key's id, or the calling module's name. */
  id: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100)),
  role: Role
}) {
  get isAdmin(): boolean {
    return this.role === "admin"
  }

  /** Whether this is module `module` calling on its own account. */
  isService(module: string): boolean {
    return this.kind === "service" && this.id === module
  }
}

/**
 * Module `module` calling on its own account. Its role is "customer": a service is allowed what
 * a check names it for, and nothing an admin's role would give.
 */
export const service = (module: string): Caller => new Caller({ kind: "service", id: module, role: "customer" })

/** The caller of the current request, provided by the gateway's authentication middleware. */
export class CurrentCaller extends Context.Tag("tessera/CurrentCaller")<CurrentCaller, Caller>() {}

/** The call needs an authenticated caller and has none (or one whose credential is not valid). */
export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()(
  "Unauthenticated",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {
  override get message() {
    return this.reason
  }
}

/** The caller is known but its role does not allow this. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {
  override get message() {
    return this.reason
  }
}

const KIND = "x-tessera-caller-kind"
const ID = "x-tessera-caller-id"
const ROLE = "x-tessera-caller-role"

/** The headers that carry `caller` with a call. */
export const toHeaders = (caller: Caller): Record<string, string> => ({
  [KIND]: caller.kind,
  [ID]: caller.id,
  [ROLE]: caller.role
})

/** The caller carried by a call's headers; none for a call made on no one's behalf. */
export const fromHeaders = (headers: Headers.Headers): Option.Option<Caller> => {
  const kind = headers[KIND]
  const id = headers[ID]
  const role = headers[ROLE]
  if (kind === undefined || id === undefined || role === undefined) return Option.none()
  return Option.getRight(Schema.decodeUnknownEither(Caller)({ kind, id, role }))
}

/**
 * The headers a handler's own calls carry on (its fiber's `RpcClient.currentHeaders`): its
 * call's caller, and nothing else, in process as remotely.
 */
export const carried = (headers: Headers.Headers): Headers.Headers => {
  if (headers[KIND] === undefined) return Headers.empty
  const caller = fromHeaders(headers)
  return Option.isSome(caller) ? Headers.fromInput(toHeaders(caller.value)) : Headers.empty
}

/** The caller of a handler's call, or `Unauthenticated`. */
export const requireCaller = (headers: Headers.Headers): Effect.Effect<Caller, Unauthenticated> =>
  Option.match(fromHeaders(headers), {
    onNone: () => Effect.fail(new Unauthenticated({ reason: "this call needs an authenticated caller" })),
    onSome: Effect.succeed
  })

/** The caller of a handler's call, who must be an admin. */
export const requireAdmin = (headers: Headers.Headers): Effect.Effect<Caller, Unauthenticated | Forbidden> =>
  Effect.filterOrFail(
    requireCaller(headers),
    (caller) => caller.isAdmin,
    () => new Forbidden({ reason: "this needs the admin role" })
  )

/** The caller of a handler's call, who must be an admin or one of the modules `services`. */
export const requireAdminOrService = (
  headers: Headers.Headers,
  ...services: ReadonlyArray<string>
): Effect.Effect<Caller, Unauthenticated | Forbidden> =>
  Effect.filterOrFail(
    requireCaller(headers),
    (caller) => caller.isAdmin || services.some((module) => caller.isService(module)),
    () =>
      new Forbidden({
        reason: services.length === 0 ? "this needs the admin role" : `this needs the admin role or module ${services.join(" or ")}`
      })
  )

/** Runs `effect` on behalf of `caller`: every module call it makes carries the caller. */
export const withCaller = (caller: Caller) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  RpcClient.withHeaders(effect, toHeaders(caller))

/**
 * Runs `effect` on module `module`'s own account (`service(module)`), whoever the current call's
 * caller is: the order saga's calls to payments, inventory and shipping.
 */
export const asService = (module: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  withCaller(service(module))(effect)

/** Runs `effect` on no one's behalf (calls carry no caller, even if the current fiber had one). */
export const anonymous = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.locallyWith(effect, RpcClient.currentHeaders, (headers) => Headers.remove(headers, [KIND, ID, ROLE]))
