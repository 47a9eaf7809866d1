/**
 * What a module declares to the runtime: its name, its contract and client Tag, the layer that
 * implements the contract, the modules it calls and the REST routes it adds to the gateway.
 * Its schema is named after it and its migrations live in `migrations/<name>/`.
 */
import type { HttpApiGroup } from "@effect/platform"
import type { Rpc, RpcClient, RpcGroup } from "@effect/rpc"
import type { SqlClient } from "@effect/sql"
import { Context, type Layer } from "effect"
import type { Authenticator } from "./gateway/Auth.ts"
import type * as Policy from "./resilience/Policy.ts"
import type { Setting } from "./Setting.ts"
import type { CallError } from "./transport/CallError.ts"

/**
 * The Tag through which any code calls a module, wherever the module runs. A call fails with the
 * contract's errors or a `CallError` (transport/CallError.ts): the same in every topology.
 */
export interface ModuleClient<Self, Name extends string, Rpcs extends Rpc.Any>
  extends Context.TagClass<Self, `${Name}/Client`, RpcClient.RpcClient<Rpcs, CallError>>
{
  readonly module: Name
  readonly group: RpcGroup.RpcGroup<Rpcs>
}

export declare namespace ModuleClient {
  export type Any = Context.Tag<any, any> & { readonly module: string; readonly group: RpcGroup.RpcGroup<any> }
}

/**
 * Declares the client Tag of a module contract:
 *
 *     export class CatalogClient extends ModuleClient("catalog", CatalogRpcs)<CatalogClient>() {}
 */
export const ModuleClient =
  <const Name extends string, Rpcs extends Rpc.Any>(module: Name, group: RpcGroup.RpcGroup<Rpcs>) =>
  <Self>(): ModuleClient<Self, Name, Rpcs> =>
    Object.assign(
      Context.Tag(`${module}/Client`)<Self, RpcClient.RpcClient<Rpcs, CallError>>(),
      { module, group }
    )

/** The REST routes a module adds to the gateway, implemented by calling its own client. */
export interface ModuleHttp {
  readonly group: HttpApiGroup.HttpApiGroup.Any
  readonly layer: Layer.Layer<any, never, any>
  /**
   * For the module that issues credentials (identity): how the gateway checks them, by calling
   * the module's own client. At most one module of a build supplies it.
   */
  readonly authenticator?: Layer.Layer<Authenticator, never, any>
}

export interface Module<
  Name extends string = string,
  Rpcs extends Rpc.Any = any,
  Calls extends ReadonlyArray<ModuleClient.Any> = ReadonlyArray<ModuleClient.Any>
> {
  readonly name: Name
  readonly client: ModuleClient<any, Name, Rpcs>
  /** Implements the contract; may use its own SQL client and the clients of `calls`. */
  readonly handlers: Layer.Layer<Rpc.ToHandler<Rpcs>, never, SqlClient.SqlClient | Context.Tag.Identifier<Calls[number]>>
  readonly calls: Calls
  readonly http?: ModuleHttp
  /** `false` for a module that keeps no data: it gets no schema, role or SQL client. */
  readonly database: boolean
  /** The module's own settings: checked at start and printed by `tessera config` with the runtime's. */
  readonly settings: ReadonlyArray<Setting.Any>
  /**
   * The policy its callers use by default (resilience/Policy.ts): what it knows of its own
   * calls (a slow report, a cheap read). The environment overrides it.
   */
  readonly resilience?: Policy.Defaults
}

export declare namespace Module {
  export type Any = Module<string, any, ReadonlyArray<ModuleClient.Any>>
}

/**
 * Declares a module. The handler layer may require only a `SqlClient` (bound to the module's own
 * schema by the runtime) and the clients of the modules listed in `calls`: anything else is a
 * type error here, so an undeclared dependency cannot slip through.
 */
export const make = <
  const Name extends string,
  Rpcs extends Rpc.Any,
  const Calls extends ReadonlyArray<ModuleClient.Any> = readonly []
>(declaration: {
  readonly client: ModuleClient<any, Name, Rpcs>
  readonly handlers: Layer.Layer<Rpc.ToHandler<Rpcs>, never, SqlClient.SqlClient | Context.Tag.Identifier<Calls[number]>>
  readonly calls?: Calls
  readonly http?: ModuleHttp
  readonly database?: boolean
  readonly settings?: ReadonlyArray<Setting.Any>
  readonly resilience?: Policy.Defaults
}): Module<Name, Rpcs, Calls> => ({
  name: declaration.client.module,
  client: declaration.client,
  handlers: declaration.handlers,
  calls: declaration.calls ?? ([] as unknown as Calls),
  database: declaration.database ?? true,
  settings: declaration.settings ?? [],
  ...(declaration.http ? { http: declaration.http } : {}),
  ...(declaration.resilience ? { resilience: declaration.resilience } : {})
})
