/**
 * Events and the process (issue 13), through the built release: a process hosting a module that
 * publishes or subscribes to events, told to use a RabbitMQ it cannot reach, is not ready and
 * says why, and becomes ready once it can (here: started again with a broker that answers); a
 * malformed AMQP_URL is refused at start, naming the variable.
 */
import { afterAll, describe, expect, it } from "vitest"
import * as Processes from "./runtime/testing/Processes.ts"
import * as Services from "./runtime/testing/Services.ts"

const postgres = await Services.findPostgres()
const rabbit = await Services.findRabbit()

const servers: Array<Processes.Server> = []
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
})

const readiness = async (server: Processes.Server) => {
  const response = await fetch(`${server.url}/health/ready`)
  return { status: response.status, body: await response.json() as { status: string; modules: Array<{ name: string; ready: boolean; detail: string }> } }
}

/** The readiness `server` settles on while starting: polls until it is neither refused nor `starting`. */
const settled = async (server: Processes.Server, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const answer = await readiness(server).catch(() => undefined)
    if (answer !== undefined && answer.body.status !== "starting" && answer.body.modules?.length) return answer
    if (Date.now() > deadline) throw new Error(`no settled readiness:\n${server.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

describe.skipIf(!postgres.ok || !rabbit.ok)("a process whose modules use events, and RabbitMQ", () => {
  it("is not ready while RabbitMQ is out of reach, naming it; ready with a broker that answers", async () => {
    const database = await Services.createDatabase((postgres as { value: string }).value)
    try {
      const env = { DATABASE_URL: database.url, TESSERA_MODULES: "catalog", TESSERA_SERVICE_SECRET: "events-service-secret-events-service-secret" }
      const away = Processes.spawnServer(await Processes.freePort(), { ...env, AMQP_URL: "amqp://guest:guest@127.0.0.1:1" })
      servers.push(away)
      const unready = await settled(away)
      expect(unready.status).toBe(503)
      const catalog = unready.body.modules.find((m) => m.name === "catalog")!
      expect(catalog.ready).toBe(false)
      expect(catalog.detail).toMatch(/RabbitMQ unreachable/)
      await away.stop()

      const there = Processes.spawnServer(await Processes.freePort(), { ...env, AMQP_URL: (rabbit as { value: string }).value })
      servers.push(there)
      await Processes.waitReady(there)
      expect((await readiness(there)).status).toBe(200)
      await there.stop()
    } finally {
      await database.drop()
    }
  })

  it("refuses a malformed AMQP_URL at start, naming it", async () => {
    const server = Processes.spawnServer(await Processes.freePort(), { TESSERA_MODULES: "catalog", AMQP_URL: "http://127.0.0.1:5672" })
    servers.push(server)
    const code = await server.exited
    expect(code).not.toBe(0)
    expect(server.output()).toMatch(/AMQP_URL/)
  })
})
