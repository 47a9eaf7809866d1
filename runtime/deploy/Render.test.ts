/**
 * `tessera deploy render`: the committed files under deploy/<topology>/ are what rendering
 * writes now for every topology of deploy/topologies (CI fails on drift); the Kubernetes objects kustomize builds from them, base and
 * overlays, are checked offline against Schemas of every field written, and against each other
 * (Services select pods, peers name headless Services, policies admit the callers); compose
 * wires what it names; and compose, Kubernetes and local processes give every process the same
 * image and the same variables.
 */
import { Command } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Effect, Either, Schema } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Deployment as UpstreamDeployment } from "kubernetes-models/apps/v1/Deployment"
import { HorizontalPodAutoscaler as UpstreamAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler"
import { Namespace as UpstreamNamespace } from "kubernetes-models/v1/Namespace"
import { PersistentVolumeClaim as UpstreamClaim } from "kubernetes-models/v1/PersistentVolumeClaim"
import { Service as UpstreamService } from "kubernetes-models/v1/Service"
import { NetworkPolicy as UpstreamPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy"
import { PodDisruptionBudget as UpstreamBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget"
import { afterAll, describe, expect, it } from "vitest"
import { parseAllDocuments, parse as parseYaml } from "yaml"
import { modules } from "../../main.ts"
import * as Cli from "../Cli.ts"
import * as Host from "../Host.ts"
import * as Setting from "../Setting.ts"
import * as Settings from "../Settings.ts"
import * as Topology from "../Topology.ts"
import * as Environment from "../Environment.ts"
import { required } from "../testing/Services.ts"
import * as Environments from "./Environments.ts"
import * as ModuleFacts from "./ModuleFacts.ts"
import * as Render from "./Render.ts"
import * as TopologyCheck from "./TopologyCheck.ts"
import * as TopologyFile from "./TopologyFile.ts"

const root = path.resolve(import.meta.dirname, "../..")
const deploy = path.join(root, "deploy")
const topologyDir = path.join(deploy, "topologies")
const facts = ModuleFacts.fromModules(modules)

const topologies = fs.readdirSync(topologyDir).filter((f) => f.endsWith(".json")).sort().map((f) => {
  const file = Effect.runSync(TopologyFile.decode(f, fs.readFileSync(path.join(topologyDir, f), "utf8")))
  const rendered = Render.render(file, facts)
  if (rendered instanceof TopologyCheck.TopologyRefused) throw rendered
  return { file, rendered, dir: path.join(deploy, file.name), path: path.join(topologyDir, f) }
})
const topology = (name: string) => topologies.find((t) => t.file.name === name)!

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-deploy-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** Every file under `dir`, relative, but what compose-secrets.sh writes. */
const filesUnder = (dir: string): Array<string> =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((f) => !f.startsWith(`secrets${path.sep}`))
    .sort()

describe("the committed deploy files", () => {
  it("deploy/ holds the topologies and one rendered folder for each, named after it, nothing else", () => {
    const folders = fs.readdirSync(deploy, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort()
    expect(folders).toEqual(["topologies", ...topologies.map((t) => t.file.name)].sort())
    for (const t of topologies) expect(path.basename(t.path), t.file.name).toBe(`${t.file.name}.json`)
    expect(topologies.length).toBeGreaterThanOrEqual(5)
  })

  it.each(topologies)("deploy/$file.name is exactly what rendering writes now (run `tessera deploy render` on its topology)", ({ dir, rendered }) => {
    expect(filesUnder(dir)).toEqual(rendered.map(([f]) => f).sort())
    for (const [relative, text] of rendered) {
      expect(fs.readFileSync(path.join(dir, relative), "utf8"), `deploy/${path.basename(dir)}/${relative}`).toBe(text)
    }
  })

  it("one image for every topology: the same Containerfile, built from a BASE argument, non-root, with a health check and `tessera serve`", () => {
    const containerfiles = new Set(topologies.map(({ rendered }) => rendered.find(([f]) => f === "Containerfile")![1]))
    expect(containerfiles.size).toBe(1)
    const text = [...containerfiles][0]!
    expect(text).toMatch(/^ARG BASE=docker\.io\/library\/node:20-bookworm-slim$/m)
    expect(text.match(/^FROM \$\{BASE\}/gm)).toHaveLength(2)
    expect(text).toMatch(/^RUN npm run build /m)
    expect(text).toMatch(/^USER 10001:10001$/m)
    expect(text).toMatch(/^HEALTHCHECK .*\n.*\/health\/live/m)
    expect(text).toMatch(/^EXPOSE 8080$/m)
    expect(text).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/tessera\.mjs"\]\nCMD \["serve"\]$/m)
    // Every path the build stage copies exists in the repository.
    for (const [, from] of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of from!.split(" ")) expect(fs.existsSync(path.join(root, source)), source).toBe(true)
    }
  })

  it("runs Deno with the permissions of `npm run start:deno`", () => {
    const script = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts["start:deno"] as string
    const flags = script.replace(/^exec /, "").split(" ").filter((w) => w.startsWith("--"))
    expect(Render.DENO_COMMAND.filter((w) => w.startsWith("--"))).toEqual(flags)
    expect(Render.DENO_COMMAND.slice(0, 2)).toEqual(["deno", "run"])
  })
})

// ---------------------------------------------------------------------------------------------
// Kubernetes, through kustomize, against the Kubernetes API's schemas (kubernetes-models) and
// Schemas of the fields written.

const kubectl = (() => {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" })
    return true
  } catch {
    if (required) throw new Error("REQUIRE_SERVICES=1 but kubectl (for `kubectl kustomize`) is not on the PATH")
    return false
  }
})()

const Name = Schema.String.pipe(Schema.pattern(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/))
const Labels = Schema.Record({ key: Schema.String.pipe(Schema.pattern(/^([a-z0-9.-]+\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/)), value: Schema.String })
const Metadata = Schema.Struct({ name: Name, namespace: Schema.String, labels: Labels })
const Selector = Schema.Struct({ matchLabels: Labels })
const Quantity = Schema.String.pipe(Schema.pattern(/^[0-9]+(m|Mi|Gi)?$/))
const Int = Schema.Int.pipe(Schema.nonNegative())
const Probe = Schema.Struct({
  httpGet: Schema.Struct({ path: Schema.String, port: Schema.Literal("http") }),
  initialDelaySeconds: Schema.optional(Int),
  periodSeconds: Int,
  timeoutSeconds: Int,
  failureThreshold: Int
})
const EnvVar = Schema.Union(
  Schema.Struct({ name: Schema.String, value: Schema.String }),
  Schema.Struct({
    name: Schema.String,
    valueFrom: Schema.Struct({ secretKeyRef: Schema.Struct({ name: Schema.Literal(Render.SECRET_NAME), key: Name, optional: Schema.optional(Schema.Boolean) }) })
  })
)
const Port = Schema.Int.pipe(Schema.between(1, 65535))
const Container = Schema.Struct({
  name: Schema.Literal("tessera"),
  image: Schema.String,
  command: Schema.optional(Schema.Array(Schema.String)),
  args: Schema.Tuple(Schema.Literal("serve")),
  ports: Schema.Tuple(Schema.Struct({ name: Schema.Literal("http"), containerPort: Port, protocol: Schema.Literal("TCP") })),
  env: Schema.Array(EnvVar),
  readinessProbe: Probe,
  livenessProbe: Probe,
  resources: Schema.Struct({ requests: Schema.Struct({ cpu: Quantity, memory: Quantity }), limits: Schema.Struct({ memory: Quantity }) }),
  securityContext: Schema.Struct({ allowPrivilegeEscalation: Schema.Literal(false), capabilities: Schema.Struct({ drop: Schema.Tuple(Schema.Literal("ALL")) }) }),
  volumeMounts: Schema.optional(Schema.Array(Schema.Struct({ name: Schema.String, mountPath: Schema.String })))
})
const Deployment = Schema.Struct({
  apiVersion: Schema.Literal("apps/v1"),
  kind: Schema.Literal("Deployment"),
  metadata: Metadata,
  spec: Schema.Struct({
    replicas: Schema.Int.pipe(Schema.positive()),
    revisionHistoryLimit: Int,
    selector: Selector,
    strategy: Schema.Union(
      Schema.Struct({ type: Schema.Literal("Recreate") }),
      Schema.Struct({ type: Schema.Literal("RollingUpdate"), rollingUpdate: Schema.Struct({ maxSurge: Int, maxUnavailable: Int }) })
    ),
    template: Schema.Struct({
      metadata: Schema.Struct({ labels: Labels }),
      spec: Schema.Struct({
        shareProcessNamespace: Schema.Literal(true),
        terminationGracePeriodSeconds: Int,
        securityContext: Schema.Struct({
          runAsNonRoot: Schema.Literal(true),
          runAsUser: Schema.Int.pipe(Schema.positive()),
          runAsGroup: Schema.Int.pipe(Schema.positive()),
          fsGroup: Schema.Int.pipe(Schema.positive()),
          seccompProfile: Schema.Struct({ type: Schema.Literal("RuntimeDefault") })
        }),
        containers: Schema.Tuple(Container),
        volumes: Schema.optional(Schema.Array(Schema.Struct({ name: Schema.String, persistentVolumeClaim: Schema.Struct({ claimName: Name }) })))
      })
    })
  })
})
const ServicePort = Schema.Struct({ name: Schema.Literal("http"), port: Port, targetPort: Schema.Literal("http"), protocol: Schema.Literal("TCP") })
const Service = Schema.Struct({
  apiVersion: Schema.Literal("v1"),
  kind: Schema.Literal("Service"),
  metadata: Metadata,
  spec: Schema.Union(
    Schema.Struct({ type: Schema.Literal("ClusterIP"), selector: Labels, ports: Schema.Tuple(ServicePort) }),
    Schema.Struct({ clusterIP: Schema.Literal("None"), selector: Labels, ports: Schema.Tuple(ServicePort) })
  )
})
const Autoscaler = Schema.Struct({
  apiVersion: Schema.Literal("autoscaling/v2"),
  kind: Schema.Literal("HorizontalPodAutoscaler"),
  metadata: Metadata,
  spec: Schema.Struct({
    scaleTargetRef: Schema.Struct({ apiVersion: Schema.Literal("apps/v1"), kind: Schema.Literal("Deployment"), name: Name }),
    minReplicas: Schema.Int.pipe(Schema.positive()),
    maxReplicas: Schema.Int.pipe(Schema.positive()),
    metrics: Schema.Array(Schema.Struct({
      type: Schema.Literal("Resource"),
      resource: Schema.Struct({ name: Schema.Literal("cpu"), target: Schema.Struct({ type: Schema.Literal("Utilization"), averageUtilization: Schema.Int.pipe(Schema.between(1, 100)) }) })
    }))
  })
})
const Budget = Schema.Struct({
  apiVersion: Schema.Literal("policy/v1"),
  kind: Schema.Literal("PodDisruptionBudget"),
  metadata: Metadata,
  spec: Schema.Struct({ maxUnavailable: Schema.Int.pipe(Schema.positive()), selector: Selector })
})
const Policy = Schema.Struct({
  apiVersion: Schema.Literal("networking.k8s.io/v1"),
  kind: Schema.Literal("NetworkPolicy"),
  metadata: Metadata,
  spec: Schema.Struct({
    podSelector: Selector,
    policyTypes: Schema.Tuple(Schema.Literal("Ingress")),
    ingress: Schema.Array(Schema.Struct({
      from: Schema.optional(Schema.Array(Schema.Struct({ podSelector: Selector }))),
      ports: Schema.Tuple(Schema.Struct({ protocol: Schema.Literal("TCP"), port: Port }))
    }))
  })
})
const Claim = Schema.Struct({
  apiVersion: Schema.Literal("v1"),
  kind: Schema.Literal("PersistentVolumeClaim"),
  metadata: Metadata,
  spec: Schema.Struct({ accessModes: Schema.Tuple(Schema.Literal("ReadWriteOnce")), resources: Schema.Struct({ requests: Schema.Struct({ storage: Quantity }) }) })
})
const NamespaceObject = Schema.Struct({ apiVersion: Schema.Literal("v1"), kind: Schema.Literal("Namespace"), metadata: Schema.Struct({ name: Name, labels: Labels }) })
const KubernetesObject = Schema.Union(Deployment, Service, Autoscaler, Budget, Policy, Claim, NamespaceObject)
type KubernetesObject = typeof KubernetesObject.Type

const decodeObject = Schema.decodeUnknownEither(KubernetesObject, { onExcessProperty: "error", errors: "all" })

/**
 * The Kubernetes API's own schemas of each kind written (kubernetes-models, generated from the
 * API's OpenAPI document): what a cluster's API server would refuse, checked offline. The
 * Schemas above say more (every field this build writes, and nothing else); these say what
 * Kubernetes itself requires of each.
 */
const upstream: Readonly<Record<string, new(data: any) => { validate(): void }>> = {
  "apps/v1 Deployment": UpstreamDeployment,
  "autoscaling/v2 HorizontalPodAutoscaler": UpstreamAutoscaler,
  "v1 Namespace": UpstreamNamespace,
  "v1 PersistentVolumeClaim": UpstreamClaim,
  "v1 Service": UpstreamService,
  "networking.k8s.io/v1 NetworkPolicy": UpstreamPolicy,
  "policy/v1 PodDisruptionBudget": UpstreamBudget
}

/** `kubectl kustomize` of `dir`, each object validated and decoded (a failure names the object and the field). */
const kustomize = (dir: string): Array<KubernetesObject> => {
  const text = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" })
  return parseAllDocuments(text).map((doc) => {
    const raw = doc.toJS() as { apiVersion?: string; kind?: string; metadata?: { name?: string } }
    const Model = upstream[`${raw.apiVersion} ${raw.kind}`]
    if (Model === undefined) throw new Error(`${dir}: ${raw.apiVersion} ${raw.kind} ${raw.metadata?.name}: a kind this test does not know`)
    try {
      new Model(raw).validate()
    } catch (error) {
      throw new Error(`${dir}: ${raw.kind} ${raw.metadata?.name}: refused by the Kubernetes API's schema: ${error}`)
    }
    const decoded = decodeObject(raw)
    if (Either.isLeft(decoded)) throw new Error(`${dir}: ${raw.kind} ${raw.metadata?.name}: ${decoded.left.message}`)
    return decoded.right
  })
}

const ofKind = <K extends KubernetesObject["kind"]>(objects: ReadonlyArray<KubernetesObject>, kind: K) =>
  objects.filter((o): o is Extract<KubernetesObject, { kind: K }> => o.kind === kind)

const selects = (selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v)

describe.skipIf(!kubectl)("the Kubernetes files (kubectl kustomize, offline)", () => {
  const builds = topologies.flatMap((t) =>
    ["base", "overlays/dev", "overlays/prod"].map((variant) => ({ ...t, variant, name: `${t.file.name} ${variant}` }))
  )

  it.each(builds)("$name: every object decodes, in its namespace, and the objects fit together", ({ dir, file, variant }) => {
    const objects = kustomize(path.join(dir, "kubernetes", variant))
    const ns = Render.namespace(file)
    const deployments = ofKind(objects, "Deployment")
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(file.processes.map((p) => p.name).sort())
    expect(ofKind(objects, "Namespace").map((n) => n.metadata.name)).toEqual([ns])
    for (const o of objects) if (o.kind !== "Namespace") expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe(ns)
    const podsOf = (selector: Readonly<Record<string, string>>) => deployments.filter((d) => selects(selector, d.spec.template.metadata.labels))

    for (const d of deployments) {
      const [container] = d.spec.template.spec.containers
      expect(container.image).toBe(Render.DEFAULT_IMAGE)
      expect(container.livenessProbe.httpGet.path).toBe("/health/live")
      expect(container.readinessProbe.httpGet.path).toBe("/health/ready")
      expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true)
      // Every peer is a headless Service of this build, in this namespace.
      const peers = container.env.find((e) => e.name === "TESSERA_PEERS")
      for (const entry of peers !== undefined && "value" in peers ? peers.value.split(",") : []) {
        const [module, location] = entry.split("=")
        expect(location).toBe(`dns://${module}-headless.${ns}.svc:8080`)
        const headless = ofKind(objects, "Service").find((s) => s.metadata.name === `${module}-headless`)
        expect(headless, `${module}-headless`).toBeDefined()
        expect(podsOf(headless!.spec.selector).map((p) => p.metadata.name)).toEqual(
          file.processes.filter((p) => Environments.hostedBy(p, facts).includes(module!)).map((p) => p.name)
        )
      }
      const process = file.processes.find((p) => p.name === d.metadata.name)!
      if (process.runtime === "deno") expect(container.command).toEqual(Render.DENO_COMMAND)
      else expect(container.command).toBeUndefined()
      expect(d.spec.replicas).toBe(variant === "overlays/dev" ? 1 : variant === "overlays/prod" && file.database !== "embedded" ? Math.max(2, process.replicas) : process.replicas)
    }
    for (const s of ofKind(objects, "Service")) expect(podsOf(s.spec.selector).length, `Service ${s.metadata.name} selects a process`).toBeGreaterThan(0)
    for (const b of ofKind(objects, "PodDisruptionBudget")) expect(podsOf(b.spec.selector.matchLabels)).toHaveLength(1)
    for (const p of ofKind(objects, "NetworkPolicy")) {
      expect(podsOf(p.spec.podSelector.matchLabels)).toHaveLength(1)
      for (const rule of p.spec.ingress) for (const from of rule.from ?? []) expect(podsOf(from.podSelector.matchLabels)).toHaveLength(1)
    }
    const autoscalers = ofKind(objects, "HorizontalPodAutoscaler")
    expect(autoscalers.map((h) => h.spec.scaleTargetRef.name).sort()).toEqual(file.database === "embedded" ? [] : deployments.map((d) => d.metadata.name).sort())
    for (const h of autoscalers) expect(h.spec.minReplicas).toBeLessThanOrEqual(h.spec.maxReplicas)
    // The embedded database's files outlive the pod: a claim mounted at /data, one pod at a time.
    const claims = ofKind(objects, "PersistentVolumeClaim")
    if (file.database === "embedded") {
      for (const d of deployments) {
        expect(d.spec.strategy.type).toBe("Recreate")
        expect(d.spec.template.spec.containers[0].volumeMounts).toEqual([{ name: "data", mountPath: "/data" }])
        const [volume] = d.spec.template.spec.volumes ?? []
        expect(claims.map((c) => c.metadata.name)).toContain(volume?.persistentVolumeClaim.claimName)
      }
    } else expect(claims).toEqual([])
    // The overlays change resources, not only replicas.
    const requests = deployments.map((d) => d.spec.template.spec.containers[0].resources.requests.cpu)
    expect(new Set(requests)).toEqual(new Set([variant === "overlays/dev" ? "50m" : variant === "overlays/prod" ? "500m" : "250m"]))
  })

  it("the Kubernetes API's schemas refuse what a cluster would: a replica count in text, a Service port in text, a container with no image name", () => {
    const objects = kustomize(path.join(topology("mixed-split").dir, "kubernetes", "base"))
    const deployment = structuredClone(ofKind(objects, "Deployment")[0]!) as any
    deployment.spec.replicas = "2"
    expect(() => new UpstreamDeployment(deployment).validate()).toThrow(/replicas/)
    const service = structuredClone(ofKind(objects, "Service")[0]!) as any
    service.spec.ports[0].port = "8080"
    expect(() => new UpstreamService(service).validate()).toThrow(/port/)
    const nameless = structuredClone(ofKind(objects, "Deployment")[0]!) as any
    delete nameless.spec.template.spec.containers[0].name
    expect(() => new UpstreamDeployment(nameless).validate()).toThrow(/name/)
  })

  it("a NetworkPolicy admits exactly the processes hosting a module that calls one there (or the gateway serving its routes); the gateway's is open", () => {
    const objects = kustomize(path.join(topology("mixed-split").dir, "kubernetes", "base"))
    const admitted = Object.fromEntries(ofKind(objects, "NetworkPolicy").map((p) => [
      p.metadata.name,
      p.spec.ingress.map((rule) => rule.from === undefined ? "anyone" : rule.from.map((f) => f.podSelector.matchLabels[Render.PROCESS_LABEL]).sort().join(","))
    ]))
    expect(admitted).toEqual({
      front: ["anyone"], // the gateway: the public API (inventory also calls catalog here)
      inventory: ["front,orders"], // orders calls inventory; the gateway serves inventory's routes
      orders: ["front"] // the gateway serves orders' routes; payments and shipping are called by orders, in the same process
    })
  })
})

// ---------------------------------------------------------------------------------------------
// compose

const Compose = Schema.Struct({
  name: Schema.String,
  services: Schema.Record({
    key: Name,
    value: Schema.Struct({
      image: Schema.String,
      init: Schema.optional(Schema.Literal(true)),
      entrypoint: Schema.optional(Schema.Array(Schema.String)),
      command: Schema.optional(Schema.Array(Schema.String)),
      environment: Schema.optional(Schema.Record({ key: Schema.String.pipe(Schema.pattern(/^[A-Z][A-Z0-9_]*$/)), value: Schema.String })),
      secrets: Schema.optional(Schema.Array(Schema.Union(Schema.String, Schema.Struct({ source: Schema.String, target: Schema.String })))),
      // The host's port a variable with a default (TESSERA_GATEWAY_PORT, 8080), the container's 8080.
      ports: Schema.optional(Schema.Array(Schema.String.pipe(Schema.pattern(/^\$\{TESSERA_GATEWAY_PORT(_[0-9]+)?:-[0-9]+\}:8080$/)))),
      volumes: Schema.optional(Schema.Array(Schema.String)),
      depends_on: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Struct({ condition: Schema.Literal("service_healthy") }) })),
      healthcheck: Schema.Struct({
        test: Schema.Array(Schema.String),
        interval: Schema.String,
        timeout: Schema.String,
        retries: Schema.Int,
        start_period: Schema.optional(Schema.String)
      }),
      stop_grace_period: Schema.optional(Schema.String),
      restart: Schema.Literal("unless-stopped")
    })
  }),
  volumes: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Struct({}) })),
  secrets: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Struct({ file: Schema.String }) }))
})

const composeOf = (rendered: ReadonlyArray<readonly [string, string]>) =>
  Schema.decodeUnknownSync(Compose, { onExcessProperty: "error" })(parseYaml(rendered.find(([f]) => f === "compose.yaml")![1]))

describe("compose.yaml", () => {
  it.each(topologies)("$file.name: decodes, and names only services, volumes and secrets it declares", ({ file, rendered }) => {
    const compose = composeOf(rendered)
    const services = Object.keys(compose.services)
    for (const [name, service] of Object.entries(compose.services)) {
      for (const dependency of Object.keys(service.depends_on ?? {})) expect(services, `${name} depends on ${dependency}`).toContain(dependency)
      // A shell command: podman-compose 1.0.3 garbles an argument list (CMD) into a check that never passes.
      expect(service.healthcheck.test[0], `${name}'s healthcheck`).toBe("CMD-SHELL")
      expect(service.healthcheck.test, `${name}'s healthcheck`).toHaveLength(2)
      for (const secret of service.secrets ?? []) expect(Object.keys(compose.secrets ?? {})).toContain(typeof secret === "string" ? secret : secret.source)
      for (const [variable, value] of Object.entries(service.environment ?? {})) {
        if (variable.endsWith("_FILE") && !variable.startsWith("POSTGRES_")) {
          expect(service.secrets?.map((s) => typeof s === "string" ? s : s.source)).toContain(value.replace("/run/secrets/", ""))
        }
      }
      const peers = service.environment?.TESSERA_PEERS
      for (const url of peers === undefined ? [] : peers.split(/[,|]/).map((e) => e.replace(/^[a-z]+=/, ""))) {
        expect(services, `${name}'s peer ${url}`).toContain(new URL(url).hostname)
      }
    }
    for (const process of file.processes) {
      for (let i = 0; i < process.replicas; i++) expect(services).toContain(Render.composeService(process, i))
    }
  })

  it.each(topologies)("$file.name: compose-secrets.sh writes every secret compose mounts, each a value the settings accept, and keeps them when run again", ({ file, rendered }) => {
    const dir = path.join(tmp, `secrets-${file.name}`)
    fs.mkdirSync(dir)
    const script = path.join(dir, "compose-secrets.sh")
    fs.writeFileSync(script, rendered.find(([f]) => f === "compose-secrets.sh")![1])
    execFileSync("sh", [script])
    const compose = composeOf(rendered)
    const read = (key: string) => fs.readFileSync(path.join(dir, "secrets", key), "utf8").replace(/\n$/, "")
    for (const key of Object.keys(compose.secrets ?? {})) expect(read(key).length, key).toBeGreaterThan(0)
    const byKey = new Map(Settings.registry(modules).map((s) => [Render.secretKey(s.name), s]))
    for (const key of Object.keys(compose.secrets ?? {})) {
      const setting = byKey.get(key)
      if (setting !== undefined) expect(setting.problem(read(key)), key).toBeUndefined()
    }
    const before = Object.keys(compose.secrets ?? {}).map(read)
    execFileSync("sh", [script])
    expect(Object.keys(compose.secrets ?? {}).map(read)).toEqual(before)
  })
})

// ---------------------------------------------------------------------------------------------

const addressings = (file: TopologyFile.TopologyFile) => [
  ["compose", Render.composeAddressing(file)],
  ["kubernetes", Render.kubernetesAddressing(file)],
  ["local", Environments.local({ portBase: 8080, databaseUrl: "postgres://postgres@127.0.0.1:5432/tessera", amqpUrl: "amqp://127.0.0.1:5672" })]
] as const

describe.skipIf(!kubectl)("one contract everywhere", () => {
  it.each(topologies)("$file.name: compose, Kubernetes and local processes give each process the same image and the same variables", ({ dir, file, rendered }) => {
    const compose = composeOf(rendered)
    const deployments = ofKind(kustomize(path.join(dir, "kubernetes", "base")), "Deployment")
    // What `tessera up` starts each instance with, and the same with what containers add.
    const up = Environments.ofTopology(file, facts, addressings(file)[2][1])
    const local = Render.environment(file, facts, addressings(file)[2][1])
    for (const process of file.processes) {
      const mine = local.filter((i) => i.instance.process === process.name)
      for (const [i, { env, instance }] of mine.entries()) {
        const names = env.map(([name]) => name)
        expect(names.slice(0, Object.keys(up[instance.index]!.env).length), instance.name).toEqual(Object.keys(up[instance.index]!.env))
        const deployment = deployments.find((d) => d.metadata.name === process.name)!
        expect(deployment.spec.template.spec.containers[0].env.map((e) => e.name), `${process.name} on Kubernetes`).toEqual(names)
        expect(deployment.spec.template.spec.containers[0].image).toBe(Render.DEFAULT_IMAGE)
        const service = compose.services[Render.composeService(process, i)]!
        expect(Object.keys(service.environment ?? {}).map((n) => n.replace(/_FILE$/, "")), `${Render.composeService(process, i)} in compose`).toEqual(names)
        expect(service.image).toBe(Render.DEFAULT_IMAGE)
      }
    }
  })
})

describe("the environment of a process", () => {
  const env = (name: string, process: string, at: (file: TopologyFile.TopologyFile) => Environments.Addressing) => {
    const file = topology(name).file
    return Object.fromEntries(Render.environment(file, facts, at(file)).find((i) => i.instance.process === process)!.env)
  }
  const local = (file: TopologyFile.TopologyFile) => addressings(file)[2][1]

  it("names every instance of a module with several, each once, in every addressing", () => {
    const plain = (v: Render.Value | undefined) => (v?._tag === "Plain" ? v.value : undefined)
    expect(plain(env("mixed-split", "orders", Render.composeAddressing).TESSERA_PEERS)).toBe(
      "catalog=http://front:8080,inventory=http://inventory-1:8080|http://inventory-2:8080"
    )
    expect(plain(env("mixed-split", "orders", local).TESSERA_PEERS)).toBe(
      "catalog=http://127.0.0.1:8080,inventory=http://127.0.0.1:8082|http://127.0.0.1:8083"
    )
    expect(plain(env("mixed-split", "orders", Render.kubernetesAddressing).TESSERA_PEERS)).toBe(
      "catalog=dns://catalog-headless.tessera-mixed-split.svc:8080,inventory=dns://inventory-headless.tessera-mixed-split.svc:8080"
    )
  })

  it("hands over each database URL only to the process hosting its modules, and secrets as secrets", () => {
    const inventory = env("own-database", "inventory", Render.composeAddressing)
    expect(Object.keys(inventory)).toEqual(["PORT", "TESSERA_MODULES", "TESSERA_PEERS", "TESSERA_INVENTORY_DATABASE_URL", "TESSERA_SERVICE_SECRET"])
    expect(inventory.TESSERA_INVENTORY_DATABASE_URL).toEqual({ _tag: "Secret", key: "inventory-database-url", optional: false })
    const front = env("own-database", "front", Render.composeAddressing)
    expect(front.DATABASE_URL).toEqual({ _tag: "Secret", key: "database-url", optional: false })
    expect(front.TESSERA_INVENTORY_DATABASE_URL).toBeUndefined()
    expect(front.TESSERA_ADMIN_PASSWORD).toEqual({ _tag: "Secret", key: "admin-password", optional: true })
  })

  it("the one process of an all-in-one topology needs no peers, database URL, broker or service secret", () => {
    expect(Object.keys(env("all-in-one", "tessera", Render.composeAddressing))).toEqual(["PORT", "TESSERA_MODULES", "TESSERA_ADMIN_PASSWORD"])
    expect(env("all-in-one", "tessera", Render.composeAddressing).TESSERA_MODULES).toEqual({ _tag: "Plain", value: "all" })
  })
})

describe("what each process is given starts it", () => {
  const cases = topologies.flatMap(({ file }) =>
    addressings(file).flatMap(([target, addressing]) =>
      Render.environment(file, facts, addressing).map(({ env, instance }) => ({ env, name: `${file.name} ${instance.name} (${target})` }))
    )
  )

  it.each(cases)("$name: its topology resolves (every module it needs is located) and the settings check passes", ({ env }) => {
    const plain = (name: string) => env.find(([k]) => k === name)?.[1]
    const value = (name: string) => {
      const v = plain(name)
      return v?._tag === "Plain" ? v.value : ""
    }
    const resolved = Topology.resolve(Host.nodes(modules), { hosted: value("TESSERA_MODULES"), peers: value("TESSERA_PEERS") })
    expect(Either.isRight(resolved) ? "resolved" : resolved.left.message).toBe("resolved")
    // Secrets as the deployment would give them: URLs to the services it runs, random secrets.
    const given = Object.fromEntries(env.map(([name, v]) =>
      [
        name,
        v._tag === "Plain"
          ? v.value
          : name === "AMQP_URL"
          ? "amqp://tessera:pw@rabbitmq:5672"
          : name.endsWith("DATABASE_URL")
          ? "postgres://tessera:pw@postgres:5432/tessera"
          : "s".repeat(48)
      ]
    ))
    const check = Setting.check(Settings.registry(modules), Settings.rules)
    expect(Effect.runSync(Effect.either(Effect.withConfigProvider(check, Environment.configProvider(given))))).toEqual(Either.right(undefined))
  })
})

describe("tessera deploy render", () => {
  const cli = (...args: Array<string>) =>
    Effect.runPromise(Effect.either(
      Command.run(Cli.command(modules), { name: "tessera", version: "0.1.0" })(["node", "tessera", "deploy", "render", ...args]).pipe(
        Effect.provide(NodeContext.layer)
      )
    ))

  it("writes every file of the topology to --out", async () => {
    const out = path.join(tmp, "out")
    const mixed = topology("mixed-split")
    expect((await cli(mixed.path, "--out", out))._tag).toBe("Right")
    expect(filesUnder(out)).toEqual(mixed.rendered.map(([f]) => f).sort())
    for (const [relative, text] of mixed.rendered) expect(fs.readFileSync(path.join(out, relative), "utf8")).toBe(text)
    expect(fs.statSync(path.join(out, "compose-secrets.sh")).mode & 0o111).not.toBe(0)
  })

  const broken = fs.readdirSync(path.join(topologyDir, "broken")).filter((f) => f.endsWith(".json")).sort()

  it.each(broken)("refuses broken/%s as `topology check` does, naming every reason, and writes nothing", async (name) => {
    const file = path.join(topologyDir, "broken", name)
    const out = path.join(tmp, `never-${name}`)
    const checked = await Effect.runPromise(Effect.flip(TopologyCheck.load(file, facts)).pipe(Effect.provide(NodeContext.layer)))
    const result = await cli(file, "--out", out)
    expect(result._tag).toBe("Left")
    const refused = result._tag === "Left" ? result.left : undefined
    expect(refused).toBeInstanceOf(TopologyCheck.TopologyRefused)
    expect((refused as TopologyCheck.TopologyRefused).problems).toEqual(checked.problems)
    expect(checked.problems.length).toBeGreaterThan(0)
    expect(fs.existsSync(out)).toBe(false)
  })

  it("refuses a file that does not exist, naming it", async () => {
    const missing = await cli(path.join(tmp, "no-such-topology.json"), "--out", path.join(tmp, "never"))
    expect(missing._tag === "Left" ? (missing.left as Error).message : "").toContain("no-such-topology.json refused: cannot be read")
    expect(fs.existsSync(path.join(tmp, "never"))).toBe(false)
  })

  it("Render.render itself refuses what TopologyCheck.problems finds", () => {
    const file = topology("mixed-split").file
    const nowhere = TopologyFile.TopologyFile.make({ ...file, processes: [file.processes[0]!] })
    const refused = Render.render(nowhere, facts)
    expect(refused).toBeInstanceOf(TopologyCheck.TopologyRefused)
    expect((refused as TopologyCheck.TopologyRefused).problems).toEqual(TopologyCheck.problems(nowhere, facts))
  })
})
