/**
 * Reads a request body sent in chunks (no Content-Length) up to a size limit without ever
 * destroying the request.
 *
 * Why not `request.text` under `HttpIncomingMessage.withMaxBodySize`: @effect/platform's reader
 * destroys a body it stops reading, and node:http (on Node and on Deno) then destroys the socket
 * at once, so the client would see a reset instead of the 413. Here reading past the limit only
 * stops; the rest is read and dropped once the answer is out (`ServerLimits.ts`), so the client
 * reads the 413. A body declared by Content-Length needs none of this: one over the limit is
 * refused before it is read, and node:http never hands over more than was declared.
 */
import { HttpServerError, HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Option } from "effect"

/**
 * The body of `request` (decoded as UTF-8, bad bytes replaced, as @effect/platform decodes
 * one), with `request` as a request whose body is that text: `None` when it is over `maxBytes`.
 */
export const read = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<Option.Option<{ readonly text: string; readonly request: HttpServerRequest.HttpServerRequest }>> =>
  Effect.map(
    Effect.orDie(readText(request, maxBytes)),
    Option.map((text) => ({ text, request: withBody(request, text) }))
  )

const readText = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  Effect.async<Option.Option<string>, HttpServerError.RequestError>((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const decoder = new TextDecoder()
    let text = ""
    let bytes = 0
    const onData = (chunk: Uint8Array) => {
      bytes += chunk.byteLength
      if (bytes > maxBytes) {
        stop()
        // No more is read now: the client's sending stalls until the answer is out.
        incoming.pause()
        return resume(Effect.succeed(Option.none()))
      }
      text += decoder.decode(chunk, { stream: true })
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Option.some(text + decoder.decode())))
    }
    const onError = (cause: unknown) => {
      stop()
      resume(Effect.fail(new HttpServerError.RequestError({ request, reason: "Decode", cause })))
    }
    const onClose = () => onError(new Error("the connection closed before the body ended"))
    const stop = () => {
      incoming.off("data", onData)
      incoming.off("end", onEnd)
      incoming.off("error", onError)
      incoming.off("close", onClose)
    }
    // Gone before its body was asked for: no event would come.
    if (incoming.destroyed) return onClose()
    incoming.on("data", onData)
    incoming.once("end", onEnd)
    incoming.once("error", onError)
    incoming.once("close", onClose)
    return Effect.sync(stop)
  })

/**
 * `request` with `text` as its body, everything else (URL as sent, headers, remote address)
 * kept: the routes read the body from this one, as they would have from the original.
 */
const withBody = (request: HttpServerRequest.HttpServerRequest, text: string) =>
  HttpServerRequest.fromWeb(new Request("http://localhost/", { method: request.method, body: text })).modify({
    url: request.url,
    headers: request.headers,
    ...Option.match(request.remoteAddress, { onNone: () => ({}), onSome: (remoteAddress) => ({ remoteAddress }) })
  })
