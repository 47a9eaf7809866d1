import * as esbuild from "esbuild"
const variant = process.argv[2]
const plugins: esbuild.Plugin[] = []
if (variant.includes("noswagger")) plugins.push({ name: "s", setup(b) { b.onLoad({ filter: /internal[\\/]httpApiSwagger\.js$/ }, () => ({ contents: "export const javascript = ''; export const css = ''", loader: "js" })) } })
if (variant.includes("noundici")) plugins.push({ name: "u", setup(b) { b.onResolve({ filter: /^undici$/ }, () => ({ path: "undici", namespace: "stub" })); b.onLoad({ filter: /.*/, namespace: "stub" }, () => ({ contents: "module.exports = {}", loader: "js" })) } })
await esbuild.build({ entryPoints: ["runtime/release/start.ts"], bundle: true, platform: "node", format: "esm", target: "node20", minifySyntax: true, minifyWhitespace: !variant.includes("ws"), minifyIdentifiers: variant.includes("ident"), outfile: `dist/exp-${variant}.mjs`, logLevel: "error",
 banner: { js: `import { createRequire as __tesseraRequire } from "node:module"; const require = __tesseraRequire(import.meta.url);` }, plugins })
