/**
 * Processes that start together (issue 10): the processes of a split deployment on PostgreSQL,
 * started at the same moment as compose and Kubernetes start them, or in either order, are all
 * ready within 30 s; any one of them can be restarted (SIGTERM or SIGKILL, then started again)
 * while the others run; and every request sent to a process while it starts, serves or stops is
 * answered with a documented status, never left hanging or reset.
 *
 * While a process starts it answers `/health/live` 200, `/health/ready` 503 `starting` and any
 * other request 503 with `Retry-After` (Startup.ts); while it stops, the same with
 * `Connection: close`. Before it listens and after it has closed, a connection is refused: an
 * answer too (nothing is there), unlike a connection accepted and left unanswered. The one reset
 * allowed is a connection that arrives at a stopping process the moment its listener closes.
 */
import * as http from "node:http"
import { afterAll, describe, expect, it } from "vitest"
import * as OpenApiConformance from "./runtime/testing/OpenApiConformance.ts"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const SETTINGS = {
  TESSERA_SERVICE_SECRET: "startup-service-secret-startup-service-secret",
  TESSERA_ADMIN_EMAIL: "admin@tessera.test",
  TESSERA_ADMIN_PASSWORD: "admin-password-startup",
  TESSERA_PASSWORD_HASH_COST: "10",
  // The probes come from one address, several a second.
  TESSERA_RATE_LIMIT: "10000"
}

/** The bound: every process of a deployment ready this long after the last one started. */
const READY_WITHIN_MS = 30_000
/** A request not answered in this long was left unanswered (the probes' own bound). */
const UNANSWERED_MS = 15_000

const postgres = await Services.findPostgres()

/** One process of a deployment: its modules and how to start it again. */
interface Member {
  readonly name: string
  readonly port: number
  readonly env: Record<string, string>
  /** Paths this process is probed on besides its health. */
  readonly routes: ReadonlyArray<string>
  server?: Processes.Server
  /** Set from SIGTERM until it is started again. */
  stopping?: boolean
}

/** What a probe got: a status, `refused` (nothing listening), or what went wrong. */
interface Answer {
  readonly member: string
  /** The member had been told to stop (SIGTERM) when the answer came. */
  readonly stopping: boolean
  readonly path: string
  readonly outcome: number | "refused" | string
  readonly headers: Headers
  readonly body: string
}

/** One GET on a connection of its own: answers of one request, not of keep-alive races. */
const probe = (member: Member, path: string): Promise<Answer> =>
  new Promise((resolve) => {
    const done = (outcome: Answer["outcome"], headers = new Headers(), body = "") =>
      resolve({ member: member.name, stopping: member.stopping === true, path, outcome, headers, body })
    const request = http.get({ host: "127.0.0.1", port: member.port, path, agent: false, timeout: UNANSWERED_MS }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on("error", (error) => done(`response cut: ${error.message}`))
      response.on("end", () => {
        const headers = new Headers()
        for (const [name, value] of Object.entries(response.headers)) {
          for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, one)
        }
        done(response.statusCode!, headers, body)
      })
    })
    request.on("timeout", () => {
      request.destroy()
      done(`unanswered within ${UNANSWERED_MS} ms`)
    })
    request.on("error", (error: NodeJS.ErrnoException) => done(error.code === "ECONNREFUSED" ? "refused" : `${error.code ?? error.message}`))
  })

/**
 * Probes every member's health and routes, one request at a time each, until stopped. A member
 * can be paused: a process about to be killed cannot answer what is in flight.
 */
const prober = (members: ReadonlyArray<Member>) => {
  const answers: Array<Answer> = []
  let running = true
  const paused = new Set<string>()
  /** Each member's round of probes in flight. */
  const rounds = new Map<string, Promise<void>>()
  const loops = members.map(async (member) => {
    while (running) {
      if (!paused.has(member.name)) {
        const round = (async () => {
          for (const path of ["/health/live", "/health/ready", ...member.routes]) answers.push(await probe(member, path))
        })()
        rounds.set(member.name, round)
        await round
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })
  return {
    answers,
    /** Stops probing `member`, once the probes in flight are answered. */
    pause: async (member: Member) => {
      paused.add(member.name)
      await rounds.get(member.name)
    },
    resume: (member: Member) => paused.delete(member.name),
    stop: async () => {
      running = false
      await Promise.all(loops)
    }
  }
}

/** Waits until `member` answers `/health/ready` 200; resolves how long that took from `since`. */
const readyAfter = async (member: Member, since: number): Promise<number> => {
  for (;;) {
    const server = member.server!
    if (server.process.exitCode !== null) throw new Error(`${member.name} exited with ${server.process.exitCode}:\n${server.output()}`)
    if (Date.now() - since > READY_WITHIN_MS * 3) throw new Error(`${member.name} never became ready:\n${server.output()}`)
    const answer = await probe(member, "/health/ready")
    if (answer.outcome === 200) return Date.now() - since
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Waits until `member` serves (its readiness no longer says `starting`): state, not time. */
const serving = async (member: Member) => {
  for (;;) {
    const answer = await probe(member, "/health/ready")
    if (typeof answer.outcome === "number" && !answer.body.includes(`"starting"`)) return
    if (member.server!.process.exitCode !== null) throw new Error(`${member.name} exited:\n${member.server!.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

const start = (member: Member) => {
  member.stopping = false
  member.server = Processes.spawnServer(member.port, { ...SETTINGS, ...member.env })
}

/** Every member ready within the bound, counted from `since` (when the last one started). */
const allReady = async (members: ReadonlyArray<Member>, since: number) => {
  const times = await Promise.all(members.map((m) => readyAfter(m, since)))
  for (const [i, ms] of times.entries()) {
    expect(ms, `${members[i]!.name} ready ${ms} ms after the deployment started`).toBeLessThanOrEqual(READY_WITHIN_MS)
  }
  return times
}

const gatewayFetch = OpenApiConformance.checkedFetch()

/** Every answer was one the process documents; those of the gateway's API, its OpenAPI document's. */
const expectAnswered = async (answers: ReadonlyArray<Answer>, gateway: Member) => {
  const wrong = answers.filter((a, i) => {
    if (a.outcome === "refused") return false
    // A stopping process's listener closes last, once all else has stopped: a connection that
    // arrives at that moment (queued by the kernel, or accepted with no request read yet) is
    // reset, as by any server that stops listening; the member's next probe is refused.
    if (a.outcome === "ECONNRESET" && a.stopping && answers.slice(i + 1).find((b) => b.member === a.member)?.outcome === "refused") return false
    if (typeof a.outcome !== "number") return true
    if (a.path === "/health/live") return a.outcome !== 200
    if (a.path === "/health/ready") {
      if (a.outcome === 200) return false
      return a.outcome !== 503 || !/^\{"status":"(starting|stopping|not ready)"/.test(a.body)
    }
    if (a.outcome === 503) return a.headers.get("retry-after") === null || !a.body.includes(`"/problems/module-unavailable"`)
    return a.outcome !== 200
  })
  expect(wrong.map((a) => `${a.member} ${a.path}: ${a.outcome} ${a.body.slice(0, 200)}`)).toEqual([])
  for (const a of answers.filter((a) => a.member === gateway.name && !a.path.startsWith("/health/") && typeof a.outcome === "number")) {
    await gatewayFetch.check(`http://127.0.0.1:${gateway.port}`, {
      method: "GET",
      url: a.path,
      status: a.outcome as number,
      headers: a.headers,
      body: a.body
    })
  }
  // Each kind of answer the start produced was seen: the probes did watch it start.
  return new Set(answers.map((a) => `${a.path} ${a.outcome}`))
}

interface Topology {
  readonly members: (db: string) => Promise<Array<Member>>
}

const ports = () => Promise.all([0, 1, 2, 3].map(() => Processes.freePort()))

// One split topology: four processes on one database. (The two-process one, inventory on its own
// database, ran the same orders too; it was dropped to keep CI within 20 minutes on two cores:
// main.test.ts still starts own-database.json and restarts its inventory.)
const topologies: Record<string, Topology> = {
  "four processes: gateway, catalog, inventory, identity on one database": {
    members: async (db) => {
      const [front, catalog, inventory, identity] = await ports()
      const peers = `catalog=http://127.0.0.1:${catalog},inventory=http://127.0.0.1:${inventory},identity=http://127.0.0.1:${identity}`
      const member = (name: string, port: number, routes: ReadonlyArray<string> = []): Member => ({
        name,
        port,
        // The gateway process also hosts orders (whose routes it serves) and what orders calls besides.
        env: { DATABASE_URL: db, TESSERA_MODULES: name === "gateway" ? "gateway,orders,payments,shipping,notifications" : name, TESSERA_PEERS: peers },
        routes
      })
      return [
        member("gateway", front!, ["/v1/products", "/.well-known/jwks.json"]),
        member("catalog", catalog!),
        member("inventory", inventory!),
        member("identity", identity!)
      ]
    }
  }
}

/** How the members of a round are started; resolves when the last one was. */
const orders: Record<string, (members: ReadonlyArray<Member>) => Promise<void>> = {
  "all at once": async (members) => members.forEach(start),
  "peers first, the gateway once they serve": async ([gateway, ...peers]) => {
    peers.forEach(start)
    await Promise.all(peers.map(serving))
    start(gateway!)
  },
  "the gateway long before its peers, which start once it serves without them": async ([gateway, ...peers]) => {
    start(gateway!)
    await serving(gateway!)
    peers.forEach(start)
  }
}

const stopAll = (members: ReadonlyArray<Member>) => Promise.all(members.map((m) => m.server?.stop()))

for (const [name, topology] of Object.entries(topologies)) {
  const describeIf = postgres.ok ? describe : describe.skip
  describeIf(name, () => {
    const dropped: Array<() => Promise<void>> = []
    const running: Array<Member> = []
    afterAll(async () => {
      await stopAll(running)
      for (const drop of dropped) await drop()
    })

    const deploy = async () => {
      if (!postgres.ok) throw new Error(postgres.reason)
      const db = await Services.createDatabase(postgres.value)
      dropped.push(db.drop)
      return topology.members(db.url)
    }

    // Three rounds, one per order, each on a new database: the processes migrate it together.
    for (const [order, launch] of Object.entries(orders)) {
      it(`${order}: every process ready within 30 s, every request answered`, async () => {
        const members = await deploy()
        running.push(...members)
        const probes = prober(members)
        try {
          await launch(members)
          await allReady(members, Date.now())
        } finally {
          await probes.stop()
        }
        const seen = await expectAnswered(probes.answers, members[0]!)
        // The probes reached the processes while they started, not only once they were ready.
        expect([...seen].some((s) => s.startsWith("/health/ready 503"))).toBe(true)
        for (const member of members) expect(await member.server!.stop()).toBe(0)
      }, 180_000)
    }

    it("restarting any one process (SIGTERM or SIGKILL) brings the deployment back, requests answered throughout", async () => {
      const members = await deploy()
      running.push(...members)
      members.forEach(start)
      await allReady(members, Date.now())
      const probes = prober(members)
      const [gateway, ...peers] = members
      try {
        // A peer stopped gracefully, and the gateway killed, in the two-process topology; the
        // gateway stopped and a peer killed in the four-process one.
        const terminated = members.length === 2 ? peers[0]! : gateway!
        const killed = members.length === 2 ? gateway! : peers[0]!

        terminated.stopping = true
        expect(await terminated.server!.stop()).toBe(0)
        start(terminated)
        await allReady(members, Date.now())

        await probes.pause(killed)
        killed.server!.process.kill("SIGKILL")
        await killed.server!.exited
        start(killed)
        probes.resume(killed)
        await allReady(members, Date.now())
      } finally {
        await probes.stop()
      }
      const seen = await expectAnswered(probes.answers, gateway!)
      expect([...seen].some((s) => s.startsWith("/health/ready 503"))).toBe(true)
      for (const member of members) expect(await member.server!.stop()).toBe(0)
    }, 240_000)
  })
}
