/**
 * The image for real: `deploy/<topology>/Containerfile` built with podman and run.
 *
 * - all-in-one: one container on its embedded database, its data on a volume: ready, serving as
 *   an unprivileged user, a product created, stopped with SIGTERM (exit 0), started again on the
 *   same volume with the product still there.
 * - per-module (`deploy/topologies/per-module.json`): every process of the topology a container
 *   of the same image, each given the environment `Environments.ofTopology` derives for it (host
 *   networking: PostgreSQL and RabbitMQ run on the host), started at once: an order placed at the
 *   gateway is confirmed, paid and shipped across the containers.
 *
 * Needs podman and a base image with Node 20 on Debian bookworm (`TESSERA_IMAGE_BASE`; no image
 * registry is reachable here, so `.ci/base-image` makes one from Debian's packages and this
 * machine's Node, in about a minute). Without them the suite is skipped, saying why; with
 * `TESSERA_CONTAINERS=1` it fails instead. `.ci/run` makes the base and builds the image in the
 * background while the other suites run, and names a file that receives the build's exit code
 * (`TESSERA_IMAGE_BUILT`, its log beside it as `<file>.log`): then this suite waits for that and
 * builds nothing. It runs alone (the `outages` project, after every other suite): its containers
 * would load the machine under the others.
 *
 *     CONTAINERS_CONF=/tmp/containers.conf .ci/base-image localhost/node-base:20-bookworm
 *     CONTAINERS_CONF=/tmp/containers.conf TESSERA_IMAGE_BASE=localhost/node-base:20-bookworm \
 *       TESSERA_CONTAINERS=1 npx vitest run main.containers.alone.test.ts
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "./main.ts"
import * as Environments from "./runtime/deploy/Environments.ts"
import * as ModuleFacts from "./runtime/deploy/ModuleFacts.ts"
import * as TopologyFile from "./runtime/deploy/TopologyFile.ts"
import { Effect } from "effect"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"
import * as Shop from "./runtime/testing/Shop.ts"

const run = promisify(execFile)
const IMAGE = "localhost/tessera:test"
const BASE = process.env.TESSERA_IMAGE_BASE ?? ""
/** Where `.ci/run`'s background build writes its exit code once it ends (IMAGE built), if it builds. */
const BUILT = process.env.TESSERA_IMAGE_BUILT ?? ""
const ADMIN = { email: "admin@containers.test", password: "admin-password-containers" }
const SECRET = "containers-service-secret-containers-test"
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const podman = (...args: Array<string>) => run("podman", args, { maxBuffer: 64 * 1024 * 1024 }).then((r) => r.stdout.trim())

/** Why the suite cannot run here, or undefined. */
const missing = await (async () => {
  // Installed and made by the background build, which the suite waits for.
  if (BUILT !== "") return undefined
  if (!(await podman("--version").then(() => true, () => false))) return "podman is not installed"
  if (BASE === "") return "TESSERA_IMAGE_BASE names no base image (.ci/base-image makes one)"
  if (!(await podman("image", "exists", BASE).then(() => true, () => false))) return `the base image ${BASE} does not exist`
  return undefined
})()
if (missing !== undefined && process.env.TESSERA_CONTAINERS === "1") throw new Error(`TESSERA_CONTAINERS=1 but ${missing}`)
const skip = missing === undefined ? undefined : `skipped: ${missing}`

const waitReady = async (url: string, name: string, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const status = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(3_000) }).then((r) => r.status, () => 0)
    if (status === 200) return
    await sleep(500)
  }
  throw new Error(`${name} not ready after ${timeoutMs} ms:\n${await podman("logs", name).catch(String)}`)
}

/** Runs a container of the image on the host's network; its name. */
const start = async (name: string, env: Record<string, string>, options: { volume?: string; runtime?: "node" | "deno" } = {}) => {
  const args = ["run", "-d", "--name", name, "--init", "--network", "host"]
  for (const [key, value] of Object.entries(env)) args.push("-e", `${key}=${value}`)
  if (options.volume) args.push("-v", `${options.volume}:/data`)
  if (options.runtime === "deno") {
    const flags = Processes.denoFlags()
    args.push("--entrypoint", "deno", IMAGE, "run", ...flags, "/app/dist/tessera.mjs", "serve")
  } else {
    args.push(IMAGE)
  }
  await podman(...args)
  return name
}

/** SIGTERM, then the container's exit code. */
const stop = async (name: string) => {
  await podman("stop", "-t", "20", name)
  return Number(await podman("inspect", name, "--format", "{{.State.ExitCode}}"))
}

describe.skipIf(skip !== undefined)("the image, built and run with podman", () => {
  const containers: Array<string> = []
  const volumes: Array<string> = []
  const suffix = Math.random().toString(36).slice(2, 8)

  beforeAll(async () => {
    if (BUILT !== "") {
      const deadline = Date.now() + 15 * 60_000
      while (!fs.existsSync(BUILT) && Date.now() < deadline) await sleep(1_000)
      const code = fs.existsSync(BUILT) ? fs.readFileSync(BUILT, "utf8").trim() : "still running after 15 minutes"
      const log = () => (fs.existsSync(`${BUILT}.log`) ? fs.readFileSync(`${BUILT}.log`, "utf8").slice(-4_000) : "(no log)")
      if (code !== "0") throw new Error(`the image's build (.ci/run, in the background) failed: ${code}\n${log()}`)
      return
    }
    // One image for every topology: the Containerfiles are the same bytes.
    await podman("build", "--format", "docker", "--build-arg", `BASE=${BASE}`, "-f", "deploy/per-module/Containerfile", "-t", IMAGE, ".")
  }, 1_000_000)

  afterAll(async () => {
    for (const name of containers) await podman("rm", "-f", name).catch(() => {})
    for (const volume of volumes) await podman("volume", "rm", "-f", volume).catch(() => {})
  })

  it("runs all-in-one on its embedded database as an unprivileged user, stops cleanly and keeps its data on its volume", async () => {
    const volume = `tessera-data-${suffix}`
    volumes.push(volume)
    const port = await Processes.freePort()
    const url = `http://127.0.0.1:${port}`
    const env = { PORT: String(port), TESSERA_ADMIN_EMAIL: ADMIN.email, TESSERA_ADMIN_PASSWORD: ADMIN.password, TESSERA_PASSWORD_HASH_COST: "10" }
    const first = await start(`tessera-aio-${suffix}`, env, { volume })
    containers.push(first)
    await waitReady(url, first)
    expect(await podman("exec", first, "id", "-u")).toBe("10001")
    const shop = Shop.make([url])
    const admin = await Shop.login(shop, ADMIN)
    const productId = await Shop.product(shop, admin, 5)
    expect(await stop(first)).toBe(0)

    const second = await start(`tessera-aio2-${suffix}`, env, { volume })
    containers.push(second)
    await waitReady(url, second)
    const stock = await shop.persist(`/v1/products/${productId}/stock`, { token: await Shop.login(shop, ADMIN) })
    expect(stock.body).toMatchObject({ available: 5 })
    expect(await stop(second)).toBe(0)
  }, 300_000)

  it("runs per-module.json as one container per process, and an order goes through all of them", async () => {
    const postgres = await Services.findPostgres()
    const rabbit = await Services.findRabbit()
    if (!postgres.ok || !rabbit.ok) throw new Error(`per-module needs PostgreSQL and RabbitMQ: ${[postgres, rabbit].filter((s) => !s.ok).map((s) => (s as { reason: string }).reason).join("; ")}`)
    const db = await Services.createDatabase(postgres.value)
    const broker = await Services.isolatedRabbit(rabbit.value)
    try {
      const file = await Effect.runPromise(TopologyFile.decode("per-module.json", fs.readFileSync("deploy/topologies/per-module.json", "utf8")))
      const at = (portBase: number) =>
        Environments.ofTopology(file, ModuleFacts.fromModules(modules), Environments.local({ portBase, databaseUrl: db.url, amqpUrl: broker.url }))
      // Each instance listens on the base port plus its number: as many free ports in a row.
      const instances = at(await Processes.freePorts(at(0).length))
      for (const instance of instances) {
        const name = `tessera-${instance.process}-${instance.replica}-${suffix}`
        containers.push(name)
        await start(name, {
          ...instance.env,
          TESSERA_SERVICE_SECRET: SECRET,
          TESSERA_ADMIN_EMAIL: ADMIN.email,
          TESSERA_ADMIN_PASSWORD: ADMIN.password,
          TESSERA_PASSWORD_HASH_COST: "10"
        }, { runtime: instance.runtime })
      }
      await Promise.all(instances.map((instance) =>
        waitReady(`http://127.0.0.1:${instance.port}`, `tessera-${instance.process}-${instance.replica}-${suffix}`)))
      const gateway = instances.find((i) => i.hosts.includes("gateway"))!
      const shop = Shop.make([`http://127.0.0.1:${gateway.port}`])
      const admin = await Shop.login(shop, ADMIN)
      const productId = await Shop.product(shop, admin, 3)
      const buyer = await Shop.customer(shop, "containers")
      const id = await Shop.place(shop, buyer, productId, `containers-${suffix}`)
      const order = await Shop.ended(shop, buyer, id)
      expect(order).toMatchObject({ status: "CONFIRMED" })
      const shipment = await shop.persist(`/v1/orders/${id}/shipment`, { token: buyer })
      expect(shipment.body).toMatchObject({ orderId: id })
      for (const instance of instances) expect(await stop(`tessera-${instance.process}-${instance.replica}-${suffix}`)).toBe(0)
    } finally {
      await db.drop()
      await broker.drop()
    }
  }, 600_000)
})

if (skip !== undefined) describe("the image, built and run with podman", () => it.skip(skip, () => {}))
