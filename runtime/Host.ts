/**
 * Assembles one process from the build's modules and this process's topology:
 *
 * - each hosted module: its database (migrated, bound to its schema), its handlers, built with
 *   the clients of the modules it calls (and, for a module that declares workflows, their
 *   engine over its own database: saga/Engine.ts; for one that publishes events, its outbox:
 *   messaging/Outbox.ts), and its RPC endpoint at `/rpc/<module>` (for a module that subscribes
 *   to events, with the runtime's dead-letter calls beside its own: `contractOf`);
 * - the relays and consumers of the hosted modules' events (messaging/Messaging.ts), started
 *   once every hosted module is up;
 * - one client per module this process needs, built by transport/Client.ts: in process for
 *   hosted modules, over the network for the others (`LocalClient` / `RemoteClient` transports,
 *   or `RemotePool` for a module with several instances or located by a DNS name, behind the
 *   module's own Tag);
 * - the gateway's REST API when `gateway` is hosted;
 * - health endpoints, all on one HTTP server, which listens before any of this is built and
 *   answers 503 until it is (Startup.ts).
 */
import { HttpApiBuilder, HttpMiddleware, HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Context, Duration, Effect, Layer, Option, type Redacted } from "effect"
import * as Database from "./db/Database.ts"
import type * as Migrations from "./db/Migrations.ts"
import { EmbeddedPostgres } from "./db/EmbeddedPostgres.ts"
import * as Auth from "./gateway/Auth.ts"
import * as Docs from "./gateway/Docs.ts"
import * as Edge from "./gateway/Edge.ts"
import * as Gateway from "./gateway/Gateway.ts"
import * as Health from "./Health.ts"
import * as DeadLetters from "./messaging/DeadLetters.ts"
import * as DeadLettersHttp from "./messaging/DeadLettersHttp.ts"
import * as Messaging from "./messaging/Messaging.ts"
import * as MessagingMigrations from "./messaging/MessagingMigrations.ts"
import * as Outbox from "./messaging/Outbox.ts"
import * as Policy from "./resilience/Policy.ts"
import * as ResilienceHttp from "./resilience/ResilienceHttp.ts"
import * as SagaMigrations from "./saga/SagaMigrations.ts"
import type { Module } from "./Module.ts"
import * as ServiceCredential from "./security/ServiceCredential.ts"
import * as ServerLimits from "./ServerLimits.ts"
import * as Settings from "./Settings.ts"
import * as Startup from "./Startup.ts"
import { GATEWAY, type ModuleNode, show, type Topology } from "./Topology.ts"
import * as Client from "./transport/Client.ts"
import * as LocalClient from "./transport/LocalClient.ts"
import * as RemoteClient from "./transport/RemoteClient.ts"
import * as RemotePool from "./transport/RemotePool.ts"
import type * as Discovery from "./transport/Discovery.ts"
import * as RpcEndpoint from "./transport/RpcEndpoint.ts"
import * as Wire from "./transport/Wire.ts"

/** A module running in this process: its database and its handlers. */
export interface Hosted {
  readonly module: Module.Any
  /** `undefined` for a module that keeps no data. */
  readonly database: Database.ModuleDatabase | undefined
  readonly handlers: Context.Context<never>
  /** Its outbox, when it publishes events. */
  readonly outbox: Outbox.Publisher | undefined
}

const hostedTag = (name: string) => Context.GenericTag<Hosted>(`tessera/Hosted/${name}`)

// The layers below are assembled from a list known only at run time: their types are erased
// to this, and each module's own declaration (Module.make) carries the checked types.
type AnyLayer = Layer.Layer<never, any, any>

const mergeAll = (layers: ReadonlyArray<AnyLayer>): AnyLayer =>
  layers.length === 0 ? Layer.empty : Layer.mergeAll(...(layers as [AnyLayer, ...Array<AnyLayer>]))

/** The runtime's own tables a module's schema holds, for the runtime services it declares. */
export const runtimeTables = (module: Module.Any): ReadonlyArray<Migrations.RuntimeSource> => [
  ...(module.workflows.length > 0 ? [SagaMigrations.source] : []),
  ...(Messaging.usesEvents(module) ? [MessagingMigrations.source] : [])
]

/**
 * What the topology needs to know of each module. A subscriber module is reached by the gateway
 * for its dead letters (messaging/DeadLettersHttp.ts), as a module with routes is.
 */
export const nodes = (modules: ReadonlyArray<Module.Any>): ReadonlyArray<ModuleNode> =>
  modules.map((m) => ({ name: m.name, calls: m.calls.map((c) => c.module), exposesHttp: m.http !== undefined || m.subscribes.length > 0 }))

/**
 * The contract a module is served and called by: its own, and for a module that subscribes to
 * events the runtime's dead-letter calls (messaging/DeadLetters.ts), handled by the runtime.
 */
export const contractOf = (module: Module.Any): Module.Any["client"]["group"] =>
  module.subscribes.length > 0 ? module.client.group.merge(DeadLetters.DeadLettersRpcs) : module.client.group

export const make = (
  modules: ReadonlyArray<Module.Any>,
  topology: Topology,
  options?: {
    /** Client layers that replace a module's client (tests stub a module this way). */
    readonly clients?: ReadonlyMap<string, Layer.Layer<never, any, any>>
    /** A span for every call between modules (default true; `TESSERA_RPC_TRACING`). */
    readonly tracing?: boolean
    /**
     * `TESSERA_SERVICE_SECRET`: needed to call modules in other processes and to serve hosted
     * ones to them. Without it this process serves no RPC endpoint.
     */
    readonly secret?: ServiceCredential.Secret | undefined
    /** How long calls in flight may take to finish at shutdown (`TESSERA_SHUTDOWN_GRACE`). */
    readonly grace?: Duration.Duration
    /** The largest RPC message sent or accepted (`TESSERA_RPC_MAX_FRAME_BYTES`). */
    readonly maxFrameBytes?: number
    /** The registry of dependencies (tests pass one to watch breakers). */
    readonly dependencies?: Policy.Registry
    /** The heartbeat of connections between modules (`TESSERA_RPC_HEARTBEAT_INTERVAL`, `_TIMEOUT`). */
    readonly heartbeatInterval?: Duration.Duration
    readonly heartbeatTimeout?: Duration.Duration
    /**
     * The interceptors of the client of a module in another process (transport/Client.ts),
     * outermost first. Default: `Client.standard` and the dependency's policy (resilience/Policy.ts).
     */
    readonly remoteInterceptors?: (module: string) => ReadonlyArray<Client.Interceptor>
    /** How often a module located by a DNS name is resolved again (`TESSERA_DNS_REFRESH`). */
    readonly dnsRefresh?: Duration.Duration
    /** How DNS names are resolved (tests give their own; default: the system's). */
    readonly resolver?: Discovery.Resolver
    /** RabbitMQ (`AMQP_URL`): events between processes. None: events within this process only. */
    readonly amqpUrl?: Option.Option<Redacted.Redacted<string>>
  }
) => {
  const tracing = options?.tracing ?? true
  const secret = options?.secret
  /** Who this process is, to the modules it calls. */
  const caller = [...(topology.gateway ? [GATEWAY] : []), ...topology.hosted].join(",")
  const byName = new Map(modules.map((m) => [m.name, m] as const))
  const hostedLayers = new Map<string, AnyLayer>()
  /** Whether the RPC socket to each remote module with one instance is open now (readiness needs it). */
  const connected = new Map<string, boolean>()
  /** The instances of each remote module with several (or a DNS name), and whether each is connected. */
  const pools = new Map<string, () => ReadonlyArray<{ readonly url: string; readonly connected: boolean }>>()
  const clientLayers = new Map<string, AnyLayer>()
  /** Each dependency's policy, breaker and bulkhead: one per target in this process. */
  const dependencies = options?.dependencies ?? new Policy.Registry()
  /** Wake-ups of the relays and consumers of events: an outbox wakes its relay after a commit. */
  const signals = new Messaging.Signals()
  /** RabbitMQ's status once messaging has started (AMQP_URL), for readiness. */
  const brokerLink = new Messaging.BrokerLink()
  const amqpUrl = options?.amqpUrl ?? Option.none()
  /** This process, to the lease of an outbox's relay. */
  const instance = crypto.randomUUID()

  /** The client of `name` as this process reaches it. Cached: one per process. */
  const clientLayer = (name: string, path: ReadonlyArray<string>): AnyLayer => {
    const cached = clientLayers.get(name) ?? options?.clients?.get(name)
    if (cached) return cached
    const module = byName.get(name)!
    const location = topology.locations.get(name)!
    const layer: AnyLayer = location._tag === "Local"
      ? Layer.effect(
        module.client,
        Effect.gen(function*() {
          const hosted = yield* hostedTag(name)
          const defaults = yield* LocalClient.defaults
          // In process: no policy (Policy.ts says why); listed in the admin view all the same.
          dependencies.local(name, yield* Effect.orDie(Policy.fromConfig(name, module.resilience)))
          return LocalClient.make(name, contractOf(module), hosted.handlers as never, { tracing, defaults })
        })
      ).pipe(Layer.provide(hostedLayer(name, path)))
      : secret === undefined
      ? Layer.die(new Error(`calling ${name} at ${show(location.peer)} needs TESSERA_SERVICE_SECRET`))
      : Layer.scoped(
        module.client,
        Effect.gen(function*() {
          // Remote: the whole policy, one breaker and bulkhead per target (resilience/Policy.ts).
          const policy = yield* Effect.orDie(Policy.fromConfig(name, module.resilience))
          const dependency = dependencies.dependency(name, policy)
          const peer = location.peer
          const common = {
            secret,
            caller,
            tracing,
            maxFrameBytes: options?.maxFrameBytes,
            heartbeatInterval: options?.heartbeatInterval,
            heartbeatTimeout: options?.heartbeatTimeout
          }
          if (peer._tag === "Urls" && peer.urls.length === 1) {
            // One instance: one connection, the target's breaker (the fast path of Policy.protect).
            return yield* RemoteClient.make(name, contractOf(module), peer.urls[0], {
              ...common,
              onConnection: (open) => connected.set(name, open),
              interceptors: options?.remoteInterceptors?.(name) ?? [...Client.standard, ...Policy.interceptors(dependency)]
            })
          }
          // Several, or a DNS name: a connection and a breaker per instance (resilience/Balancer.ts).
          const pool = yield* RemotePool.make(name, contractOf(module), peer, {
            ...common,
            breaker: (url) => dependencies.instanceBreaker(name, url, policy),
            resolver: options?.resolver,
            refresh: options?.dnsRefresh,
            interceptors: options?.remoteInterceptors?.(name) ?? [...Client.standard, Policy.protectInstances(dependency)]
          })
          dependencies.instances(name, pool.balancer)
          pools.set(name, pool.balancer.members)
          return pool.client
        })
      )
    clientLayers.set(name, layer)
    return layer
  }

  /** A hosted module: database opened and migrated, handlers built. Cached: one per process. */
  const hostedLayer = (name: string, path: ReadonlyArray<string>): AnyLayer => {
    const cached = hostedLayers.get(name)
    if (cached) return cached
    if (path.includes(name)) {
      throw new Error(`modules call each other in a cycle: ${[...path, name].join(" → ")}; break it with an event`)
    }
    const module = byName.get(name)!
    const calls = module.calls.map((client) => clientLayer(client.module, [...path, name]))
    const layer = Layer.scoped(
      hostedTag(name),
      Effect.gen(function*() {
        const clients = yield* Effect.context<never>()
        const sagas = module.workflows.length > 0
        const database = module.database ? yield* Database.open(name, { runtime: runtimeTables(module) }) : undefined
        // Besides what its declaration allows: this process's dependencies, for a module's
        // outbound HTTP under the same policies (Policy.httpClientFor).
        const provided = Context.add(clients, Policy.Dependencies, dependencies)
        const withSql = database ? Context.add(provided, SqlClient.SqlClient, database.sql) : provided
        const outbox = database && module.publishes.length > 0
          ? Outbox.make(name, database.sql, module.publishes, signals.relay(name).wake, { notify: database.listen !== undefined })
          : undefined
        const withOutbox = outbox ? Context.add(withSql, Outbox.Outbox, outbox) : withSql
        // A module that declares workflows gets their engine over its own database (saga/Engine.ts),
        // loaded only by a process that hosts one. Built before the handlers, it stops after them.
        const engine = sagas && database
          ? yield* Effect.flatMap(
            Effect.promise(() => import("./saga/Engine.ts")),
            (Engine) =>
              Layer.build(Engine.layer(name, { embedded: database.location === "embedded" }).pipe(Layer.provide(Layer.succeed(SqlClient.SqlClient, database.sql))))
          )
          : Context.empty()
        const own = yield* Layer.build(module.handlers).pipe(
          Effect.provide(Context.merge(withOutbox, engine))
        )
        // A subscriber's dead letters, served beside its own calls (contractOf).
        const handlers = database && module.subscribes.length > 0
          ? Context.merge(
            own,
            yield* Layer.build(DeadLetters.layer({
              module: name,
              sql: database.sql,
              wake: signals.consumer(name).wake,
              notify: database.listen !== undefined
            }))
          )
          : own
        return { module, database, handlers: handlers as Context.Context<never>, outbox }
      })
    ).pipe(Layer.provide(mergeAll(calls)))
    hostedLayers.set(name, layer)
    return layer
  }

  const hosted = topology.hosted.map((name) => hostedLayer(name, []))

  /** The hosted modules' relays and consumers of events, started once all of them are up. */
  const refused = Messaging.problems(modules, topology.hosted, { broker: Option.isSome(amqpUrl) })
  const messaging: AnyLayer = refused.length > 0
    ? Layer.fail(new Error(refused.join("; ")))
    : Layer.scopedDiscard(Effect.gen(function*() {
      const found = yield* Effect.forEach(topology.hosted, (name) => hostedTag(name))
      const withEvents = found.filter((h) => h.database !== undefined && Messaging.usesEvents(h.module))
      if (withEvents.length === 0) return
      yield* Effect.orDie(Messaging.start(
        withEvents.map((h) => ({
          module: h.module,
          sql: h.database!.sql,
          outbox: h.outbox,
          embedded: h.database!.location === "embedded",
          listen: h.database!.listen
        })),
        signals,
        instance,
        { amqpUrl, link: brokerLink }
      ))
    })).pipe(Layer.provide(mergeAll(hosted)))

  // Without the shared secret no peer could present a credential: serve no endpoint at all.
  const endpoints = secret === undefined ? [] : topology.hosted.map((name) => {
    const module = byName.get(name)!
    return Layer.unwrapEffect(
      Effect.map(hostedTag(name), (h) => RpcEndpoint.layer(name, contractOf(module), h.handlers as never, {
        secret,
        tracing,
        grace: options?.grace,
        maxFrameBytes: options?.maxFrameBytes,
        heartbeatTimeout: options?.heartbeatTimeout
      }))
    ).pipe(Layer.provide(hostedLayer(name, [])))
  })

  const exposed = topology.gateway ? modules.filter((m) => m.http !== undefined) : []
  const subscribers = topology.gateway ? modules.filter((m) => m.subscribes.length > 0) : []
  const api = Gateway.api(exposed)
  const apiLayer = HttpApiBuilder.api(api).pipe(
    Layer.provide(mergeAll(exposed.map((m) => m.http!.layer.pipe(Layer.provide(clientLayer(m.name, [])))))),
    Layer.provide(DeadLettersHttp.layer(Gateway.API_ID).pipe(Layer.provide(Layer.effect(
      DeadLettersHttp.Subscribers,
      Effect.forEach(subscribers, (m) => Effect.map(m.client, (client) => ({ module: m.name, client: DeadLetters.clientOf(client) })))
    ).pipe(Layer.provide(mergeAll(subscribers.map((m) => clientLayer(m.name, [])))))))),
    Layer.provide(ResilienceHttp.layer(Gateway.API_ID).pipe(Layer.provide(Layer.succeed(ResilienceHttp.Dependencies, dependencies)))),
    Layer.provide(Auth.layer),
    Layer.orDie
  )

  /** How the gateway checks credentials: supplied by the module that issues them, if any. */
  const issuer = exposed.find((m) => m.http!.authenticator !== undefined)
  const authenticator: Layer.Layer<Auth.Authenticator> = issuer
    ? (issuer.http!.authenticator!.pipe(Layer.provide(clientLayer(issuer.name, []))) as Layer.Layer<Auth.Authenticator>)
    : Auth.noAuthenticator

  const health = Health.routes({
    hosted: topology.hosted.map((name) => ({
      name,
      status: Effect.flatMap(hostedTag(name), (h) =>
        Messaging.usesEvents(h.module)
          ? Effect.zipWith(Health.moduleStatus(h), brokerLink.status, (own, broker) =>
            broker.ready || !own.ready ? own : { ready: false, detail: broker.reason ?? "RabbitMQ unreachable" })
          : Health.moduleStatus(h)),
      stall: Effect.flatMap(hostedTag(name), Health.moduleStall)
    })),
    locations: topology.locations,
    instances: (name) => {
      const pool = pools.get(name)
      if (pool !== undefined) return pool()
      const location = topology.locations.get(name)
      return location?._tag === "Remote" && location.peer._tag === "Urls"
        ? [{ url: location.peer.urls[0], connected: connected.get(name) === true }]
        : []
    }
  }).pipe(Layer.provide(mergeAll(hosted)))

  /** Every client this process has, local or remote. */
  const clients = mergeAll([...topology.locations.keys()].map((name) => clientLayer(name, [])))

  return { api, apiLayer, authenticator, clients, dependencies, endpoints, health, hosted, messaging }
}

/** The HTTP server of this process, serving everything `make` assembled. */
export const serve = (modules: ReadonlyArray<Module.Any>, topology: Topology) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const port = yield* Settings.port.config
      const edge = yield* Edge.settings
      const limits = yield* ServerLimits.settings
      const grace = yield* Settings.shutdownGrace.config
      const tracing = yield* Settings.rpcTracing.config
      const maxFrameBytes = yield* Wire.maxFrameBytesFromConfig
      const heartbeatInterval = yield* Settings.rpcHeartbeatInterval.config
      const heartbeatTimeout = yield* Settings.rpcHeartbeatTimeout.config
      const dnsRefresh = yield* Settings.dnsRefresh.config
      const embedded = yield* needsEmbedded(modules, topology)
      const secret = Option.getOrUndefined(yield* ServiceCredential.secretFromConfig)
      const whole = topology.gateway && modules.every((m) => topology.hosted.includes(m.name))
      if (!whole && secret === undefined) {
        return yield* Effect.fail(
          new Error(
            "this process runs part of the system: set TESSERA_SERVICE_SECRET, the same in every process, " +
              "so that modules in different processes can call each other (for example: openssl rand -base64 48)"
          )
        )
      }
      const amqpUrl = yield* Settings.amqpUrl.config
      const refused = Messaging.problems(modules, topology.hosted, { broker: Option.isSome(amqpUrl) })
      if (refused.length > 0) return yield* Effect.fail(new Error(refused.join("; ")))
      const host = make(modules, topology, {
        tracing,
        secret,
        grace,
        maxFrameBytes,
        heartbeatInterval,
        heartbeatTimeout,
        dnsRefresh,
        amqpUrl
      })
      const server = ServerLimits.createServer(limits)
      const phases = Startup.make({
        starting: `opening ${topology.hosted.join(", ") || "its clients"}`,
        middleware: Edge.securityHeaders,
        grace
      })

      const docs = topology.gateway ? Docs.layer : Layer.empty

      // Listening comes first, and answers at once (Startup.ts): a peer starting at the same
      // moment gets a 503 saying this process is starting, never a request left unanswered.
      const listening = Layer.provideMerge(
        Startup.closing(server, grace),
        Layer.provideMerge(phases.listen.pipe(HttpServer.withLogAddress), NodeHttpServer.layer(() => server, { port }))
      )

      return HttpApiBuilder.serve((app) => HttpMiddleware.logger(Edge.securityHeaders(app))).pipe(
        Layer.provide(docs),
        Layer.provide(mergeAll([host.health, ...host.endpoints, host.messaging])),
        Layer.provide(HttpApiBuilder.middleware(Edge.middleware(edge, Edge.routesOf(host.api))).pipe(Layer.provide(host.authenticator))),
        Layer.provide(host.apiLayer),
        Layer.provide(phases.handOver),
        Layer.provide(mergeAll(host.hosted)),
        Layer.provide(embedded ? EmbeddedPostgres.layer : Layer.empty),
        Layer.provide(listening),
        HttpMiddleware.withTracerDisabledWhen((request) => request.url.startsWith("/health")),
        // The router matches as the edge does (Edge.ROUTER_CONFIG): its decisions hold for the route.
        Layer.locally(HttpRouter.currentRouterConfig, Edge.ROUTER_CONFIG)
      ) as Layer.Layer<never, unknown>
    })
  )

/** The hosted modules that keep data (and so have a database to open and migrate). */
export const withData = (modules: ReadonlyArray<Module.Any>, topology: Topology): ReadonlyArray<string> =>
  modules.filter((m) => m.database && topology.hosted.includes(m.name)).map((m) => m.name)

/** Whether any hosted module keeps its data in the embedded database. */
export const needsEmbedded = (modules: ReadonlyArray<Module.Any>, topology: Topology) =>
  Effect.map(Effect.forEach(withData(modules, topology), Database.urlFor), (urls) => urls.some(Option.isNone))
