/**
 * `tessera deploy render FILE [--out DIR] [--image NAME]`: writes what runs the topology FILE in
 * containers (Render.ts) to DIR, by default `deploy/<topology name>`, once `TopologyCheck`
 * finds nothing wrong with it. The build's modules come from the composition root, like every
 * command's.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Console, Effect, Option } from "effect"
import type { Module } from "../Module.ts"
import * as ModuleFacts from "./ModuleFacts.ts"
import * as Render from "./Render.ts"
import * as TopologyCheck from "./TopologyCheck.ts"

/** Writes `files` under `out`, each only if its content differs; returns the paths written. */
export const write = (out: string, files: ReadonlyArray<readonly [string, string]>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const written: Array<string> = []
    for (const [relative, text] of files) {
      const target = path.join(out, relative)
      const before = yield* fs.readFileString(target).pipe(Effect.option)
      if (Option.getOrUndefined(before) === text) continue
      yield* fs.makeDirectory(path.dirname(target), { recursive: true })
      yield* fs.writeFileString(target, text, { mode: relative.endsWith(".sh") ? 0o755 : 0o644 })
      written.push(relative)
    }
    return written
  })

export const command = (modules: ReadonlyArray<Module.Any>) => {
  const facts = ModuleFacts.fromModules(modules)
  const render = Command.make(
    "render",
    {
      // Plain text, not Args.file or Options.directory: those check with `access`, which Deno allows
      // only with --allow-sys=uid; reading the file names one that is missing.
      file: Args.text({ name: "FILE" }).pipe(Args.withDescription("a topology file (deploy/topologies/*.json)")),
      out: Options.text("out").pipe(Options.optional, Options.withDescription("where to write (default: deploy/<topology name>)")),
      image: Options.text("image").pipe(Options.withDefault(Render.DEFAULT_IMAGE), Options.withDescription("the image every process runs"))
    },
    ({ file, image, out }) =>
      Effect.gen(function*() {
        // Refused as `tessera topology check` refuses it, every reason named.
        const topology = yield* TopologyCheck.load(file, facts)
        const rendered = Render.render(topology, facts, { image, path: file })
        if (rendered instanceof TopologyCheck.TopologyRefused) return yield* rendered
        const dir = Option.getOrElse(out, () => `deploy/${topology.name}`)
        const written = yield* write(dir, rendered)
        yield* Console.log(`${dir}: ${rendered.length} files, ${written.length} changed${written.length > 0 ? ` (${written.join(", ")})` : ""}`)
      }).pipe(Effect.provide(NodeContext.layer))
  ).pipe(Command.withDescription("Write the Containerfile, compose.yaml and Kubernetes files of a topology"))
  return Command.make("deploy").pipe(
    Command.withDescription("Files that run a topology in containers"),
    Command.withSubcommands([render])
  )
}
