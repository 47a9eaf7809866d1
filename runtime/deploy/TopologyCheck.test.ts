import { describe, expect, it } from "@effect/vitest"
import type { ModuleFacts } from "./ModuleFacts.ts"
import * as TopologyCheck from "./TopologyCheck.ts"
import { Process, TopologyFile } from "./TopologyFile.ts"

/** A small build: shop calls stock and publishes Sold, which mail subscribes to; clock keeps no data. */
const modules: ReadonlyArray<ModuleFacts> = [
  { name: "stock", calls: [], exposesHttp: true, database: true, publishes: [], subscribes: [] },
  { name: "shop", calls: ["stock", "clock"], exposesHttp: true, database: true, publishes: ["Sold"], subscribes: [] },
  { name: "mail", calls: [], exposesHttp: false, database: true, publishes: [], subscribes: [{ publisher: "shop", event: "Sold" }] },
  { name: "clock", calls: [], exposesHttp: false, database: false, publishes: [], subscribes: [] }
]

const process = (name: string, hosted: ReadonlyArray<string>, replicas = 1) =>
  new Process({ name, modules: hosted as [string, ...Array<string>], runtime: "node", replicas })

const check = (fields: Partial<ConstructorParameters<typeof TopologyFile>[0]> & Pick<TopologyFile, "processes">) =>
  TopologyCheck.problems(
    new TopologyFile({ name: "t", description: "", database: "postgres", broker: "rabbitmq", ownDatabase: [], ...fields }),
    modules
  )

describe("TopologyCheck.problems", () => {
  it("accepts a module hosted by several processes on one database, and all in one process", () => {
    expect(check({ processes: [process("front", ["gateway", "shop", "mail", "clock", "stock"]), process("stock", ["stock"], 3)] })).toEqual([])
    expect(check({ database: "embedded", broker: "in-process", processes: [process("one", ["all"])] })).toEqual([])
  })

  it("refuses all beside other names, a name given twice, and ownDatabase misused", () => {
    expect(check({
      ownDatabase: ["clock", "billing", "stock", "stock"],
      processes: [process("front", ["all", "shop"]), process("b", ["stock", "stock"])]
    })).toEqual([
      `process "front" names "all" beside other modules: "all" already hosts every module and the gateway`,
      `process "b" names "stock" twice`,
      "ownDatabase names clock, which keeps no data",
      `ownDatabase names "billing", unknown to this build`,
      "ownDatabase names stock twice"
    ])
  })

  it("refuses a call whose callee is hosted nowhere, naming the process and the caller", () => {
    expect(check({ processes: [process("front", ["gateway", "shop", "stock", "mail"])] })).toEqual([
      "module clock is placed in no process: add it to one",
      `process "front": shop calls clock, which no process hosts: the call has no route`
    ])
  })

  it("refuses an event across processes without a broker, and accepts it with one", () => {
    const processes = [process("front", ["gateway", "shop", "stock", "clock"]), process("mail", ["mail"])] as const
    expect(check({ broker: "in-process", processes: [...processes] })).toEqual([
      `process "front" hosts shop without mail, and mail subscribes to Sold of shop: with broker "in-process" events go only within a process: use broker "rabbitmq", or host shop and mail together`,
      `process "mail" hosts mail without shop, and mail subscribes to Sold of shop: with broker "in-process" events go only within a process: use broker "rabbitmq", or host shop and mail together`
    ])
    expect(check({ broker: "rabbitmq", processes: [...processes] })).toEqual([])
  })
})
