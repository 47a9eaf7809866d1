/**
 * What the topology tools need to know of a build's modules (`topology check`, `up`, `deploy
 * render`): which module calls which, which add routes to the gateway, which keep data, and who
 * publishes and subscribes to which events. Plain data, so that a topology is checked and its
 * environments derived without building a module.
 */
import type { Module } from "../Module.ts"

export interface ModuleFacts {
  readonly name: string
  /** The modules it calls (`Module.calls`). */
  readonly calls: ReadonlyArray<string>
  /** Whether it adds REST routes to the gateway (the gateway then needs it). */
  readonly exposesHttp: boolean
  /** Whether it keeps data (a schema, a database URL). */
  readonly database: boolean
  /** The events it publishes, by name. */
  readonly publishes: ReadonlyArray<string>
  /** The events it subscribes to: whose and which. */
  readonly subscribes: ReadonlyArray<{ readonly publisher: string; readonly event: string }>
  /**
   * Its own settings that are secret (`display: "secret"`), by variable name: `deploy render`
   * hands them over as secrets (none when absent).
   */
  readonly secrets?: ReadonlyArray<string>
}

/** The facts of a build's modules, in the build's order. */
export const fromModules = (modules: ReadonlyArray<Module.Any>): ReadonlyArray<ModuleFacts> =>
  modules.map((m) => ({
    name: m.name,
    calls: m.calls.map((c) => c.module),
    exposesHttp: m.http !== undefined,
    database: m.database,
    publishes: m.publishes.map((e) => e.name),
    subscribes: m.subscribes.map((s) => ({ publisher: s.event.publisher, event: s.event.name })),
    secrets: m.settings.filter((s) => s.display === "secret").map((s) => s.name)
  }))
