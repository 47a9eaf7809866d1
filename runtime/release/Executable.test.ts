/**
 * The single executable (`npm run build:exe`, `dist/tessera`): copied alone into an empty folder,
 * with no `node` on the PATH, it runs the whole shop on embedded PostgreSQL, and every `tessera`
 * command works. Built here when missing or stale (10-20 s), as the release is for the other
 * end-to-end suites.
 */
import { CommandDescriptor } from "@effect/cli"
import { HashMap } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { modules } from "../../main.ts"
import * as Cli from "../Cli.ts"
import * as Processes from "../testing/Processes.ts"
import * as Build from "./Build.ts"

const ADMIN = { email: "exe-admin@tessera.test", password: "exe admin password" }
/** The executable's size limit: small enough to download and ship as one file. */
const MAX_BYTES = 100 * 2 ** 20

/** Every subcommand of `tessera`, from the CLI itself, so that a new one is covered here too. */
const subcommands = [...HashMap.keys(CommandDescriptor.getSubcommands(Cli.command(modules).descriptor))].sort()

describe("the single executable, alone in an empty folder", () => {
  let folder = ""
  let dataDir = ""
  const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}, port = 0) =>
    Processes.spawnProgram(path.join(folder, "tessera"), args, {
      // Nothing to borrow from the machine: no node, no DATABASE_URL, no module selection.
      PATH: path.join(folder, "no-such-dir"),
      DATABASE_URL: "",
      TESSERA_MODULES: "",
      TESSERA_PEERS: "",
      TESSERA_DATA_DIR: dataDir,
      ...env
    }, { cwd: folder, port })
  const runToEnd = async (args: ReadonlyArray<string>) => {
    const command = run(args)
    const code = await command.exited
    return { code, output: command.output() }
  }

  beforeAll(async () => {
    await Build.buildExecutable({ ifStale: true })
    folder = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-exe-"))
    dataDir = path.join(folder, "data")
    fs.copyFileSync(Build.executable, path.join(folder, "tessera"))
    fs.chmodSync(path.join(folder, "tessera"), 0o755)
    expect(fs.readdirSync(folder)).toEqual(["tessera"])
  }, 180_000)
  afterAll(() => {
    if (folder) fs.rmSync(folder, { recursive: true, force: true })
  })

  it("is at most 100 MiB", () => {
    const bytes = fs.statSync(path.join(folder, "tessera")).size
    expect(bytes).toBeGreaterThan(0)
    expect(bytes).toBeLessThanOrEqual(MAX_BYTES)
  })

  it("prints its version and its help, which names every subcommand", async () => {
    const version = await runToEnd(["--version"])
    expect(version, version.output).toMatchObject({ code: 0 })
    expect(version.output.trim()).toBe(JSON.parse(fs.readFileSync(path.join(Build.root, "package.json"), "utf8")).version)

    const help = await runToEnd(["--help"])
    expect(help.code, help.output).toBe(0)
    expect(subcommands).toEqual(expect.arrayContaining(["migrate", "serve", "topology"]))
    for (const name of subcommands) expect(help.output).toMatch(new RegExp(`- ${name}\\s`))
  }, 60_000)

  it.each(subcommands)("%s --help explains the subcommand", async (name) => {
    const help = await runToEnd([name, "--help"])
    expect(help.code, help.output).toBe(0)
    expect(help.output).toContain(`$ ${name}`)
    // Loading nothing from disk: the executable warns when its code asks for more than Node's built-ins.
    expect(help.output).not.toMatch(/Warning/)
  }, 60_000)

  it("prints the topology: every module here", async () => {
    const topology = await runToEnd(["topology"])
    expect(topology.code, topology.output).toBe(0)
    for (const module of ["gateway", ...modules.map((m) => m.name)]) expect(topology.output).toMatch(new RegExp(`^${module}\\s+here`, "m"))
  }, 60_000)

  it("migrates the embedded database from the migrations it carries", async () => {
    const migrate = await runToEnd(["migrate"])
    expect(migrate.code, migrate.output).toBe(0)
    expect(migrate.output).toContain("migrated: catalog, inventory, identity")
    expect(fs.existsSync(path.join(dataDir, "pg", "PG_VERSION"))).toBe(true)
    // Every other subcommand that ends by itself, once the database is migrated.
    // (`up` needs a topology file and runs until stopped.)
    for (const name of subcommands.filter((n) => !["serve", "migrate", "topology", "up"].includes(n))) {
      const other = await runToEnd([name])
      expect(other.code, `tessera ${name}: ${other.output}`).toBe(0)
      expect(other.output.trim(), `tessera ${name}`).not.toBe("")
    }
  }, 180_000)

  it("serves the shop over REST: register, log in as admin, create, list and restock a product", async () => {
    const port = await Processes.freePort()
    const server = run(["serve"], {
      PORT: String(port),
      TESSERA_ADMIN_EMAIL: ADMIN.email,
      TESSERA_ADMIN_PASSWORD: ADMIN.password,
      TESSERA_PASSWORD_HASH_COST: "10"
    }, port)
    try {
      await Processes.waitReady(server, 150_000)
      const api = async (route: string, init: { token?: string; json?: unknown } = {}) => {
        const response = await fetch(`${server.url}${route}`, {
          method: init.json === undefined ? "GET" : "POST",
          headers: {
            ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
            ...(init.json === undefined ? {} : { "content-type": "application/json" })
          },
          ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) })
        })
        return { status: response.status, body: await response.json() as Record<string, any> }
      }
      const login = async (credentials: { email: string; password: string }) => {
        const answer = await api("/v1/auth/login", { json: credentials })
        expect(answer.status, JSON.stringify(answer.body)).toBe(200)
        return answer.body.accessToken as string
      }

      const customer = { email: "exe-customer@tessera.test", password: "a good password", name: "Ana" }
      expect((await api("/v1/auth/register", { json: customer })).status).toBe(201)
      expect(await login(customer)).toEqual(expect.any(String))

      const admin = await login(ADMIN)
      const created = await api("/v1/products", {
        token: admin,
        json: { sku: "EXE-1", name: "Single-file mug", priceCents: 1299, currency: "EUR" }
      })
      expect(created.status, JSON.stringify(created.body)).toBe(201)
      const listed = await api("/v1/products?q=Single-file", { token: admin })
      expect(listed.status).toBe(200)
      expect(listed.body.items.map((p: { id: string }) => p.id)).toEqual([created.body.id])

      const restocked = await api(`/v1/products/${created.body.id}/stock`, { token: admin, json: { quantity: 7 } })
      expect(restocked).toEqual({ status: 200, body: { productId: created.body.id, available: 7, reserved: 0 } })
      expect((await api(`/v1/products/${created.body.id}/stock`, { token: admin })).body.available).toBe(7)
    } finally {
      expect(await server.stop(), server.output()).toBe(0)
    }
    expect(server.output()).not.toMatch(/Warning/)
    // Nothing was written beside the executable but the data directory.
    expect(fs.readdirSync(folder).sort()).toEqual(["data", "tessera"])
  }, 240_000)
})
