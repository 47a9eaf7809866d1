/**
 * What a module declares to the runtime: its name, its contract and client Tag, the layer that
 * implements the contract, the modules it calls and the REST routes it adds to the gateway.
 * Its schema is named after it and its migrations live in `migrations/<name>/`.
 */
import type { HttpApiGroup } from "@effect/platform"
import type { Rpc, RpcClient, RpcGroup } from "@effect/rpc"
import type { SqlClient } from "@effect/sql"
import type { Workflow, WorkflowEngine } from "@effect/workflow"
import { Context, type Layer } from "effect"
import type { Authenticator } from "./gateway/Auth.ts"
import type * as Event from "./messaging/Event.ts"
import type { Outbox } from "./messaging/Outbox.ts"
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

/**
 * What the runtime provides to a module's handler layer for the runtime services it declares: a
 * `WorkflowEngine` (@effect/workflow) when it declares `workflows`, an `Outbox`
 * (messaging/Outbox.ts) when it declares events it `publishes`, nothing otherwise. A module that
 * asks for a service it does not declare does not type-check.
 */
export type RuntimeServices<
  Workflows extends ReadonlyArray<Workflow.Any>,
  Publishes extends ReadonlyArray<Event.Event.Any> = readonly []
> =
  | (Workflows extends readonly [] ? never : WorkflowEngine.WorkflowEngine)
  | (Publishes extends readonly [] ? never : Outbox)

/** Everything a module's handler layer may require. */
export type HandlerRequirements<
  Calls extends ReadonlyArray<ModuleClient.Any>,
  Workflows extends ReadonlyArray<Workflow.Any>,
  Publishes extends ReadonlyArray<Event.Event.Any> = readonly []
> = SqlClient.SqlClient | Context.Tag.Identifier<Calls[number]> | RuntimeServices<Workflows, Publishes>

/**
 * Everything a module's event handler may require: its own client and, when it publishes, its
 * outbox. It runs inside a transaction, where calls to other modules are refused.
 */
export type SubscriberRequirements<Publishes extends ReadonlyArray<Event.Event.Any>> =
  | SqlClient.SqlClient
  | (Publishes extends readonly [] ? never : Outbox)

export interface Module<
  Name extends string = string,
  Rpcs extends Rpc.Any = any,
  Calls extends ReadonlyArray<ModuleClient.Any> = ReadonlyArray<ModuleClient.Any>,
  Workflows extends ReadonlyArray<Workflow.Any> = ReadonlyArray<Workflow.Any>,
  Publishes extends ReadonlyArray<Event.Event.Any> = ReadonlyArray<Event.Event.Any>
> {
  readonly name: Name
  readonly client: ModuleClient<any, Name, Rpcs>
  /**
   * Implements the contract; may use its own SQL client, the clients of `calls` and, when it
   * declares `workflows`, a `WorkflowEngine` (and registers them: `Workflow.toLayer`).
   */
  readonly handlers: Layer.Layer<Rpc.ToHandler<Rpcs>, never, HandlerRequirements<Calls, Workflows, Publishes>>
  readonly calls: Calls
  /**
   * The durable workflows (sagas, runtime/saga/Saga.ts) this module runs. For a module that
   * declares any, the runtime runs @effect/cluster's SQL-backed workflow engine over the
   * module's own database (its tables in the module's schema), shares the work among every
   * instance of the module on that database, and migrates the saga tables (`sagas`,
   * `saga_steps`) into its schema. The handler layer registers each (`Saga.toLayer` or
   * `Workflow.toLayer`); a declared workflow that is not registered never runs.
   */
  readonly workflows: Workflows
  /**
   * The events it publishes (messaging/Event.ts, from its `<Name>Events.ts`), each inside the
   * transaction that makes the change (`Outbox.publish`). The runtime migrates the messaging
   * tables into its schema and relays its outbox (messaging/Messaging.ts).
   */
  readonly publishes: Publishes
  /**
   * What it does with other modules' events (`Event.on(event, handler)`, the event imported from
   * the publisher's index.ts): each handler runs in a transaction of the module's own client
   * that also records the message in its inbox.
   */
  readonly subscribes: ReadonlyArray<Event.Subscription.Any>
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
  export type Any = Module<string, any, ReadonlyArray<ModuleClient.Any>, ReadonlyArray<Workflow.Any>, ReadonlyArray<Event.Event.Any>>
}

/**
 * Declares a module. The handler layer may require only a `SqlClient` (bound to the module's own
 * schema by the runtime), the clients of the modules listed in `calls`, a `WorkflowEngine` if it
 * lists `workflows` and an `Outbox` if it lists events it `publishes`; its event handlers only
 * the `SqlClient` and that `Outbox`: anything else is a type error here, so an undeclared
 * dependency cannot slip through.
 */
export const make = <
  const Name extends string,
  Rpcs extends Rpc.Any,
  const Calls extends ReadonlyArray<ModuleClient.Any> = readonly [],
  const Workflows extends ReadonlyArray<Workflow.Any> = readonly [],
  const Publishes extends ReadonlyArray<Event.Event<Name, string, any, any>> = readonly []
>(declaration: {
  readonly client: ModuleClient<any, Name, Rpcs>
  // NoInfer: what the handlers require must not decide which workflows or events are declared.
  readonly handlers: Layer.Layer<Rpc.ToHandler<Rpcs>, never, HandlerRequirements<Calls, NoInfer<Workflows>, NoInfer<Publishes>>>
  readonly calls?: Calls
  readonly workflows?: Workflows
  readonly publishes?: Publishes
  readonly subscribes?: ReadonlyArray<Event.Subscription<Event.Event.Any, SubscriberRequirements<NoInfer<Publishes>>>>
  readonly http?: ModuleHttp
  readonly database?: boolean
  readonly settings?: ReadonlyArray<Setting.Any>
  readonly resilience?: Policy.Defaults
}): Module<Name, Rpcs, Calls, Workflows, Publishes> => {
  const name = declaration.client.module
  if ((declaration.workflows?.length ?? 0) > 0 && declaration.database === false) {
    throw new Error(`module ${name} declares workflows, whose state lives in its database: it cannot be database: false`)
  }
  const events = (declaration.publishes?.length ?? 0) + (declaration.subscribes?.length ?? 0)
  if (events > 0 && declaration.database === false) {
    throw new Error(`module ${name} publishes or subscribes to events, whose outbox and inbox live in its database: it cannot be database: false`)
  }
  const published = (declaration.publishes ?? []).map((e) => e.name)
  const twice = published.find((event, i) => published.indexOf(event) !== i)
  if (twice !== undefined) throw new Error(`module ${name} declares ${twice} twice`)
  const subscribed = (declaration.subscribes ?? []).map((s) => `${s.event.publisher}'s ${s.event.name}`)
  const again = subscribed.find((key, i) => subscribed.indexOf(key) !== i)
  if (again !== undefined) throw new Error(`module ${name} subscribes to ${again} twice: one handler per event`)
  return {
    name: declaration.client.module,
    client: declaration.client,
    handlers: declaration.handlers,
    calls: declaration.calls ?? ([] as unknown as Calls),
    workflows: declaration.workflows ?? ([] as unknown as Workflows),
    publishes: declaration.publishes ?? ([] as unknown as Publishes),
    subscribes: declaration.subscribes ?? [],
    database: declaration.database ?? true,
    settings: declaration.settings ?? [],
    ...(declaration.http ? { http: declaration.http } : {}),
    ...(declaration.resilience ? { resilience: declaration.resilience } : {})
  }
}
