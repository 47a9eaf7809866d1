import { describe, expect, it } from "@effect/vitest"
import * as Environments from "./Environments.ts"
import type { ModuleFacts } from "./ModuleFacts.ts"
import { Process, TopologyFile } from "./TopologyFile.ts"

/** A small build: shop calls stock and publishes Sold, which mail subscribes to; clock keeps no data. */
const modules: ReadonlyArray<ModuleFacts> = [
  { name: "stock", calls: [], exposesHttp: true, database: true, publishes: [], subscribes: [] },
  { name: "shop", calls: ["stock", "clock"], exposesHttp: true, database: true, publishes: ["Sold"], subscribes: [] },
  { name: "mail", calls: [], exposesHttp: false, database: true, publishes: [], subscribes: [{ publisher: "shop", event: "Sold" }] },
  { name: "clock", calls: [], exposesHttp: false, database: false, publishes: [], subscribes: [] }
]

const topology = (fields: Partial<ConstructorParameters<typeof TopologyFile>[0]> & Pick<TopologyFile, "processes">) =>
  new TopologyFile({ name: "t", description: "", database: "postgres", broker: "rabbitmq", ownDatabase: [], ...fields })

const process = (name: string, hosted: ReadonlyArray<string>, extra: { replicas?: number; runtime?: "node" | "deno" } = {}) =>
  new Process({ name, modules: hosted as [string, ...Array<string>], runtime: extra.runtime ?? "node", replicas: extra.replicas ?? 1 })

const local = Environments.local({
  portBase: 9000,
  databaseUrl: "postgres://admin:pw@db.example:5432/shop",
  amqpUrl: "amqp://guest:guest@mq.example:5672"
})

describe("Environments.ofTopology", () => {
  it("gives every instance its port, what it hosts, the instances of each module it needs, and only the URLs it uses", () => {
    const split = topology({
      ownDatabase: ["stock"],
      processes: [
        process("front", ["gateway", "shop", "clock"], { runtime: "deno" }),
        process("stock", ["stock"], { replicas: 2 }),
        process("mail", ["mail"])
      ]
    })
    const found = Environments.ofTopology(split, modules, local)
    expect(found.map((i) => [i.name, i.runtime, i.port, i.hosts])).toEqual([
      ["front.0", "deno", 9000, ["gateway", "shop", "clock"]],
      ["stock.0", "node", 9001, ["stock"]],
      ["stock.1", "node", 9002, ["stock"]],
      ["mail.0", "node", 9003, ["mail"]]
    ])
    expect(found[0]!.env).toEqual({
      PORT: "9000",
      TESSERA_MODULES: "gateway,shop,clock",
      // Both instances of stock, separated by |; the gateway needs nothing mail serves.
      TESSERA_PEERS: "stock=http://127.0.0.1:9001|http://127.0.0.1:9002",
      DATABASE_URL: "postgres://admin:pw@db.example:5432/shop",
      AMQP_URL: "amqp://guest:guest@mq.example:5672"
    })
    // stock: its own database only, no peers, no broker (it neither publishes nor subscribes).
    expect(found[1]!.env).toEqual({
      PORT: "9001",
      TESSERA_MODULES: "stock",
      TESSERA_STOCK_DATABASE_URL: "postgres://admin:pw@db.example:5432/shop_stock"
    })
    expect(found[2]!.env.PORT).toBe("9002")
    expect(found[3]!.env).toEqual({
      PORT: "9003",
      TESSERA_MODULES: "mail",
      DATABASE_URL: "postgres://admin:pw@db.example:5432/shop",
      AMQP_URL: "amqp://guest:guest@mq.example:5672"
    })
  })

  it("names a module served by several processes with every instance of each", () => {
    const found = Environments.ofTopology(
      topology({ processes: [process("front", ["gateway", "shop", "mail", "clock"]), process("a", ["stock"]), process("b", ["stock", "clock"], { replicas: 2 })] }),
      modules,
      local
    )
    expect(found[0]!.env.TESSERA_PEERS).toBe("stock=http://127.0.0.1:9001|http://127.0.0.1:9002|http://127.0.0.1:9003")
  })

  it("keeps all as all, and gives an embedded topology no database or broker URL", () => {
    const [only] = Environments.ofTopology(
      topology({ database: "embedded", broker: "in-process", processes: [process("tessera", ["all"])] }),
      modules,
      local
    )
    expect(only!.env).toEqual({ PORT: "9000", TESSERA_MODULES: "all" })
    expect(only!.hosts).toEqual(["gateway", "stock", "shop", "mail", "clock"])
  })

  it("takes the target's addresses: DNS names instead of local ports", () => {
    const dns: Environments.Addressing = {
      port: () => 8080,
      location: (module) => `dns://${module}-instances.shop.svc:8080`,
      databaseUrl: "postgres://db/shop",
      ownDatabaseUrl: (module) => `postgres://db/${module}`,
      amqpUrl: "amqp://mq"
    }
    const found = Environments.ofTopology(
      topology({ processes: [process("front", ["gateway", "shop", "mail", "clock"], { replicas: 3 }), process("stock", ["stock"], { replicas: 3 })] }),
      modules,
      dns
    )
    expect(new Set(found.filter((i) => i.process === "front").map((i) => JSON.stringify(i.env))).size).toBe(1)
    expect(found[0]!.env.TESSERA_PEERS).toBe("stock=dns://stock-instances.shop.svc:8080")
    expect(found[0]!.env.PORT).toBe("8080")
  })

  it("lists every variable it may set, so a target can clear inherited ones", () => {
    expect(Environments.variables(modules)).toEqual([
      "PORT",
      "TESSERA_MODULES",
      "TESSERA_PEERS",
      "DATABASE_URL",
      "TESSERA_STOCK_DATABASE_URL",
      "TESSERA_SHOP_DATABASE_URL",
      "TESSERA_MAIL_DATABASE_URL",
      "AMQP_URL"
    ])
  })

  it("puts a module's own database beside the shared one on its server", () => {
    expect(Environments.ownDatabaseOnServer("postgres://u:p%40ss@h:5433/shop?sslmode=require", "inventory"))
      .toBe("postgres://u:p%40ss@h:5433/shop_inventory?sslmode=require")
    expect(Environments.ownDatabaseOnServer("postgres://h", "inventory")).toBe("postgres://h/postgres_inventory")
  })
})
