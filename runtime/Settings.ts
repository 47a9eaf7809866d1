/**
 * Every setting of the runtime, declared once (`Setting.ts`), and `registry`: the whole
 * configuration of a build, with its modules' own settings and database URLs (and the
 * topology's two, declared in Topology.ts, which this file imports). The files that
 * use a setting read it through its declaration here (`Edge.settings`, `ServerLimits.settings`,
 * ... are built from these); README's "Configure it" table documents them, and a test keeps the
 * two in step.
 */
import { Config, Duration, Either, LogLevel, Option, Redacted } from "effect"
import * as Setting from "./Setting.ts"
import * as Topology from "./Topology.ts"

export const port = Setting.port({
  name: "PORT",
  description: "HTTP port: REST API, /rpc/<module>, /health/*",
  default: "8080"
})

export const logLevel = Setting.choice({
  name: "LOG_LEVEL",
  description: "the least severe log line written",
  default: "info",
  options: {
    all: LogLevel.All,
    trace: LogLevel.Trace,
    debug: LogLevel.Debug,
    info: LogLevel.Info,
    warn: LogLevel.Warning,
    warning: LogLevel.Warning,
    error: LogLevel.Error,
    fatal: LogLevel.Fatal,
    none: LogLevel.None
  }
})

export const databaseUrl = Setting.postgresUrl({
  name: "DATABASE_URL",
  description: "PostgreSQL for every module (admin URL)"
})

/** `TESSERA_<MODULE>_DATABASE_URL`: one module's own database. */
export const moduleDatabaseUrl = (module: string) =>
  Setting.postgresUrl({
    name: `TESSERA_${module.toUpperCase()}_DATABASE_URL`,
    description: `${module}'s own database (admin URL)`
  })

export const dataDir = Setting.make({
  name: "TESSERA_DATA_DIR",
  description: "embedded PostgreSQL's data, when no URL is set",
  default: "./.tessera",
  expected: "a directory path",
  // Any path: the directory is created when missing.
  kind: { _tag: "Text" },
  parse: Either.right
})

export const migrationsDir = Setting.optional({
  name: "TESSERA_MIGRATIONS_DIR",
  description: "a migrations/ folder to read instead of the migrations the build carries",
  expected: "an existing directory",
  // A misspelt folder would otherwise mean "no migrations" for every module.
  kind: { _tag: "Custom", invalid: ["/nonexistent/tessera-migrations", "/dev/null"] },
  parse: Setting.parseDirectory
})

export const dbPoolSize = Setting.integer({
  name: "TESSERA_DB_POOL_SIZE",
  description: "connections per module on PostgreSQL",
  default: "10",
  min: 2
})

export const dbAcquireTimeout = Setting.duration({
  name: "TESSERA_DB_ACQUIRE_TIMEOUT",
  description: "how long a statement waits for a connection",
  default: "15 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

export const dbStatementTimeout = Setting.duration({
  name: "TESSERA_DB_STATEMENT_TIMEOUT",
  description: "how long a statement may run on PostgreSQL",
  default: "10 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

export const dbStallTimeout = Setting.duration({
  name: "TESSERA_DB_STALL_TIMEOUT",
  description: "how long a hosted module's pool may stay wholly held before /health/live fails",
  default: "30 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

export const shutdownGrace = Setting.duration({
  name: "TESSERA_SHUTDOWN_GRACE",
  description: "how long SIGTERM waits for in-flight requests",
  default: "10 seconds",
  min: Duration.zero,
  exclusiveMin: false
})

export const sagaPollInterval = Setting.duration({
  name: "TESSERA_SAGA_POLL_INTERVAL",
  description: "how often a module running sagas reads its workflow storage for work another instance handed it",
  default: "1 second",
  min: Duration.millis(50),
  exclusiveMin: false
})

export const sagaLockExpiration = Setting.duration({
  name: "TESSERA_SAGA_LOCK_EXPIRATION",
  description: "how long an instance that stopped answering keeps its sagas before another instance takes them over",
  default: "20 seconds",
  min: Duration.seconds(3),
  exclusiveMin: false
})

export const sagaRetryBackoff = Setting.duration({
  name: "TESSERA_SAGA_RETRY_BACKOFF",
  description: "first wait before a saga's compensation (or a step that asks for retries, or one that died) is tried again; each next wait doubles, up to a minute",
  default: "200 millis",
  min: Duration.zero,
  exclusiveMin: true
})

export const sagaStuckAfter = Setting.integer({
  name: "TESSERA_SAGA_STUCK_AFTER",
  description: "failed attempts of one compensation, or of a step that retries until it succeeds, after which its saga shows as stuck (it keeps retrying)",
  default: "5",
  min: 1
})

/** An AMQP URL: `amqp:` or `amqps:`, with a host. */
const parseAmqpUrl: Setting.Parse<Redacted.Redacted<string>> = (raw) => {
  const text = raw.trim()
  if (!URL.canParse(text)) return Either.left("not a URL")
  const url = new URL(text)
  if (url.protocol !== "amqp:" && url.protocol !== "amqps:") return Either.left(`scheme ${url.protocol}`)
  if (url.hostname === "") return Either.left("no host")
  return Either.right(Redacted.make(text))
}

export const amqpUrl = Setting.optional({
  name: "AMQP_URL",
  description: "RabbitMQ, for events between processes; unset: events go only between modules of one process",
  expected: "an AMQP URL such as amqp://user:password@host:5672",
  kind: { _tag: "Custom", invalid: ["not a url", "http://127.0.0.1:5672", "amqp://"] },
  display: "url",
  parse: parseAmqpUrl
})

export const eventsMaxDeliveries = Setting.integer({
  name: "TESSERA_EVENTS_MAX_DELIVERIES",
  description: "failed deliveries of an event to one subscriber after which it is dead-lettered with its error",
  default: "5",
  min: 1
})

export const eventsRetryBackoff = Setting.duration({
  name: "TESSERA_EVENTS_RETRY_BACKOFF",
  description: "first wait before a failed delivery of an event is tried again; each next wait doubles, up to a minute",
  default: "1 second",
  min: Duration.zero,
  exclusiveMin: true
})

export const eventsPollInterval = Setting.duration({
  name: "TESSERA_EVENTS_POLL_INTERVAL",
  description: "how often outboxes and event queues are read for work this process was not woken for",
  default: "1 second",
  min: Duration.millis(10),
  exclusiveMin: false
})

export const eventsOrderHold = Setting.duration({
  name: "TESSERA_EVENTS_ORDER_HOLD",
  description: "longest an event waits for an earlier event of its aggregate that has not arrived before it is applied without it",
  default: "10 minutes",
  min: Duration.zero,
  exclusiveMin: true
})

export const eventsRetention = Setting.duration({
  name: "TESSERA_EVENTS_RETENTION",
  description: "how long published outbox rows and inbox records are kept (a message delivered again later is applied again)",
  default: "7 days",
  min: Duration.zero,
  exclusiveMin: true
})

export const rpcTracing = Setting.boolean({
  name: "TESSERA_RPC_TRACING",
  description: "a span for every call between modules",
  default: "true"
})

/** The largest RPC message either end accepts (`transport/Wire.ts`). */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
export const MIN_MAX_FRAME_BYTES = 64 * 1024

export const rpcMaxFrameBytes = Setting.integer({
  name: "TESSERA_RPC_MAX_FRAME_BYTES",
  description: "largest RPC message between processes, sent or accepted",
  default: String(DEFAULT_MAX_FRAME_BYTES),
  min: MIN_MAX_FRAME_BYTES
})

/**
 * The heartbeat of every connection between modules (RemoteClient pings, RpcEndpoint watches):
 * a peer that is frozen or cut off keeps its TCP connection open for minutes, so silence is
 * the only sign. Pinging every second and giving up after three without an answer notices it
 * within seconds at the cost of one small frame per second per connection, and lets a peer
 * miss two pings (a long GC pause, a busy event loop) before its connection is dropped.
 */
export const DEFAULT_RPC_HEARTBEAT_INTERVAL = "1 second"
export const DEFAULT_RPC_HEARTBEAT_TIMEOUT = "3 seconds"

export const rpcHeartbeatInterval = Setting.duration({
  name: "TESSERA_RPC_HEARTBEAT_INTERVAL",
  description: "how often a connection between modules is pinged",
  default: DEFAULT_RPC_HEARTBEAT_INTERVAL,
  min: Duration.zero,
  exclusiveMin: true
})

export const rpcHeartbeatTimeout = Setting.duration({
  name: "TESSERA_RPC_HEARTBEAT_TIMEOUT",
  description: "a connection between modules silent this long is closed (its calls in flight fail)",
  default: DEFAULT_RPC_HEARTBEAT_TIMEOUT,
  min: Duration.zero,
  exclusiveMin: true
})

export const DEFAULT_DNS_REFRESH = "5 seconds"

export const dnsRefresh = Setting.duration({
  name: "TESSERA_DNS_REFRESH",
  description: "how often a module located by a DNS name (TESSERA_PEERS name=dns://host:port) is resolved again",
  default: DEFAULT_DNS_REFRESH,
  min: Duration.seconds(1),
  exclusiveMin: false
})

/** A heartbeat must come more often than its silence is given up on. */
export const heartbeatWithinTimeout = {
  holds: (interval: Duration.Duration, timeout: Duration.Duration) => Duration.lessThan(interval, timeout),
  problem: "TESSERA_RPC_HEARTBEAT_INTERVAL: expected shorter than TESSERA_RPC_HEARTBEAT_TIMEOUT"
}

export const MIN_SERVICE_SECRET_LENGTH = 32

export const serviceSecret = Setting.secret({
  name: "TESSERA_SERVICE_SECRET",
  description: "shared by every process of a split deployment: signs cross-process RPC credentials",
  minLength: MIN_SERVICE_SECRET_LENGTH,
  hint: "for example: openssl rand -base64 48"
})

export const maxBodyBytes = Setting.integer({
  name: "TESSERA_MAX_BODY_BYTES",
  description: "largest request body",
  default: String(1024 * 1024),
  min: 1
})

export const rateLimit = Setting.number({
  name: "TESSERA_RATE_LIMIT",
  description: "requests per second per client; 0 turns limits off",
  default: "100",
  min: 0,
  exclusiveMin: false
})

export const authRateLimit = Setting.number({
  name: "TESSERA_AUTH_RATE_LIMIT",
  description: "requests per minute per client IP to login and register",
  default: "10",
  min: 0,
  exclusiveMin: true
})

export const trustedProxies = Setting.integer({
  name: "TESSERA_TRUSTED_PROXIES",
  description: "proxies in front that append to X-Forwarded-For",
  default: "0",
  min: 0
})

export const maxJsonDepth = Setting.integer({
  name: "TESSERA_MAX_JSON_DEPTH",
  description: "deepest nesting of a JSON body",
  default: "32",
  min: 1
})

export const corsOrigins = Setting.make({
  name: "TESSERA_CORS_ORIGINS",
  description: "origins whose browser pages may call the API",
  default: "",
  expected: "origins such as https://shop.example, separated by commas",
  kind: { _tag: "Custom", invalid: ["shop.example", "https://shop.example/", "https://shop.example,nonsense"] },
  parse: (raw) => {
    const origins = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
    const bad = origins.filter((o) => !(URL.canParse(o) && new URL(o).origin === o))
    return bad.length > 0 ? Either.left(`not an origin: ${bad.join(", ")}`) : Either.right(origins)
  }
})

export const headersTimeout = Setting.duration({
  name: "TESSERA_HEADERS_TIMEOUT",
  description: "time for a request's line and headers to arrive",
  default: "10 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

export const requestTimeout = Setting.duration({
  name: "TESSERA_REQUEST_TIMEOUT",
  description: "time for a whole request to arrive",
  default: "30 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

/**
 * How long the gateway gives a request's work: its deadline (transport/Deadline.ts), which every
 * call between modules made for it carries. Past it the request is answered 504 and its calls
 * still running are interrupted, here and in the modules they reached.
 */
export const DEFAULT_REQUEST_DEADLINE = "10 seconds"

export const requestDeadline = Setting.duration({
  name: "TESSERA_REQUEST_DEADLINE",
  description: "time the gateway gives a request's work (504 past it)",
  default: DEFAULT_REQUEST_DEADLINE,
  min: Duration.zero,
  exclusiveMin: true
})

export const keepAliveTimeout = Setting.duration({
  name: "TESSERA_KEEP_ALIVE_TIMEOUT",
  description: "an idle kept-alive connection is closed after this",
  default: "5 seconds",
  min: Duration.zero,
  exclusiveMin: true
})

export const maxHeaderBytes = Setting.integer({
  name: "TESSERA_MAX_HEADER_BYTES",
  description: "largest request line and headers",
  default: String(16 * 1024),
  min: 1024
})

export const maxConnections = Setting.integer({
  name: "TESSERA_MAX_CONNECTIONS",
  description: "open connections to the process (0: no limit)",
  default: "10000",
  min: 0
})

export const maxConnectionsPerAddress = Setting.integer({
  name: "TESSERA_MAX_CONNECTIONS_PER_ADDRESS",
  description: "open connections from one peer address (0: no limit)",
  default: "256",
  min: 0
})

// The policy of every call to another module or an outside system (resilience/Policy.ts): each
// set for all targets, or for one as TESSERA_<TARGET>_<suffix> (TESSERA_INVENTORY_CALL_TIMEOUT).
// ARCHITECTURE.md (Resilience) says why each default is what it is.

export const callTimeout = Setting.family({
  ...Setting.durationSpec({
    name: "TESSERA_CALL_TIMEOUT",
    description: "how long one attempt of a call to another module may take",
    min: Duration.zero,
    exclusiveMin: true
  }),
  default: "5 seconds"
})

export const callDeadline = Setting.family({
  ...Setting.durationSpec({
    name: "TESSERA_CALL_DEADLINE",
    description: "how long a call may take in all, its retries included (and never past the caller's deadline)",
    min: Duration.zero,
    exclusiveMin: true
  }),
  default: "10 seconds"
})

export const callRetries = Setting.family({
  ...Setting.integerSpec({
    name: "TESSERA_CALL_RETRIES",
    description: "retries of an idempotent call that failed in transport (0: none)",
    min: 0,
    max: 10
  }),
  default: "2"
})

export const callBackoff = Setting.family({
  ...Setting.durationSpec({
    name: "TESSERA_CALL_BACKOFF",
    description: "the longest first wait before a retry; each next one doubles, drawn at random below it",
    min: Duration.zero,
    exclusiveMin: true
  }),
  default: "50 millis"
})

export const breakerFailureRate = Setting.family({
  ...Setting.integerSpec({
    name: "TESSERA_BREAKER_FAILURE_RATE",
    description: "percentage of failed calls in the breaker's window that opens it",
    min: 1,
    max: 100
  }),
  default: "50"
})

export const breakerMinCalls = Setting.family({
  ...Setting.integerSpec({
    name: "TESSERA_BREAKER_MIN_CALLS",
    description: "calls the breaker's window must hold before it judges rates",
    min: 1,
    max: 1000
  }),
  default: "10"
})

export const breakerOpenFor = Setting.family({
  ...Setting.durationSpec({
    name: "TESSERA_BREAKER_OPEN_FOR",
    description: "how long an open breaker refuses calls before it lets a probe through",
    min: Duration.zero,
    exclusiveMin: true
  }),
  default: "5 seconds"
})

export const breakerSlowCall = Setting.family({
  ...Setting.durationSpec({
    name: "TESSERA_BREAKER_SLOW_CALL",
    description: "a call this slow counts as slow; a window of only slow calls opens the breaker",
    min: Duration.zero,
    exclusiveMin: true
  }),
  default: "2 seconds"
})

export const bulkheadLimit = Setting.family({
  ...Setting.integerSpec({
    name: "TESSERA_BULKHEAD_LIMIT",
    description: "calls to one target running at once",
    min: 1,
    max: 4096
  }),
  default: "64"
})

export const bulkheadQueue = Setting.family({
  ...Setting.integerSpec({
    name: "TESSERA_BULKHEAD_QUEUE",
    description: "calls to one target waiting for a turn; more fail at once",
    min: 0,
    max: 100000
  }),
  default: "256"
})

/** A setting of the policy: for every target, or for one. */
export type ResilienceFamily<A> = Setting.Family<A>

/** The policy's settings, each a family: one for every target, or per target. */
export const resilience = [
  callTimeout,
  callDeadline,
  callRetries,
  callBackoff,
  breakerFailureRate,
  breakerMinCalls,
  breakerOpenFor,
  breakerSlowCall,
  bulkheadLimit,
  bulkheadQueue
] as const

/** A request's headers must be able to arrive within the time the whole request has. */
export const headersWithinRequest = {
  holds: (headers: Duration.Duration, request: Duration.Duration) => Duration.lessThanOrEqualTo(headers, request),
  problem: "TESSERA_HEADERS_TIMEOUT: expected no longer than TESSERA_REQUEST_TIMEOUT"
}

/** Rules between the settings above (checked once each value is valid). */
export const rules: ReadonlyArray<Setting.Rule> = [
  Config.map(Config.all([headersTimeout.config, requestTimeout.config]), ([headers, request]) =>
    headersWithinRequest.holds(headers, request) ? Option.none() : Option.some(headersWithinRequest.problem)),
  Config.map(Config.all([rpcHeartbeatInterval.config, rpcHeartbeatTimeout.config]), ([interval, timeout]) =>
    heartbeatWithinTimeout.holds(interval, timeout) ? Option.none() : Option.some(heartbeatWithinTimeout.problem))
]

/** What the registry needs to know of a module. */
export interface ModuleSettings {
  readonly name: string
  readonly database: boolean
  readonly settings?: ReadonlyArray<Setting.Setting.Any> | undefined
}

/**
 * The whole configuration of a build: the runtime's settings, each data-keeping module's
 * database URL, and the settings each module declares, in that order.
 */
export const registry = (modules: ReadonlyArray<ModuleSettings>): ReadonlyArray<Setting.Setting.Any> => {
  const names = modules.map((m) => m.name)
  return [
    port,
    Topology.hostedModules(names),
    Topology.peers(names),
    databaseUrl,
    ...modules.filter((m) => m.database).map((m) => moduleDatabaseUrl(m.name)),
    dataDir,
    migrationsDir,
    dbPoolSize,
    dbAcquireTimeout,
    dbStatementTimeout,
    dbStallTimeout,
    maxBodyBytes,
    shutdownGrace,
    sagaPollInterval,
    sagaLockExpiration,
    sagaRetryBackoff,
    sagaStuckAfter,
    amqpUrl,
    eventsMaxDeliveries,
    eventsRetryBackoff,
    eventsPollInterval,
    eventsOrderHold,
    eventsRetention,
    rpcTracing,
    serviceSecret,
    rpcMaxFrameBytes,
    rpcHeartbeatInterval,
    rpcHeartbeatTimeout,
    dnsRefresh,
    ...resilience.map((family) => family.global),
    ...modules.flatMap((m) => resilience.map((family) => family.forTarget(m.name))),
    ...modules.flatMap((m) => m.settings ?? []),
    rateLimit,
    authRateLimit,
    trustedProxies,
    maxJsonDepth,
    corsOrigins,
    headersTimeout,
    requestTimeout,
    requestDeadline,
    keepAliveTimeout,
    maxHeaderBytes,
    maxConnections,
    maxConnectionsPerAddress,
    logLevel
  ]
}
