/**
 * The remote ceiling's server: bare `node:http`, no Effect, no Schema. POST a JSON `{ id }`,
 * get back the same JSON the Echo handler's result encodes to. Listens on PORT and prints
 * `listening` once it does.
 */
import { Buffer } from "node:buffer"
import { createServer } from "node:http"
import { encoded } from "./Echo.ts"

const server = createServer((request, response) => {
  let body = ""
  request.setEncoding("utf8")
  request.on("data", (chunk: string) => (body += chunk))
  request.on("end", () => {
    const { id } = JSON.parse(body || "{}") as { id?: string }
    const json = JSON.stringify(encoded(id ?? ""))
    response.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(json) })
    response.end(json)
  })
})

server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"))
process.on("SIGTERM", () => server.close(() => process.exit(0)))
