#!/usr/bin/env node
// `npx tessera ...`: runs the composition root (main.ts) through tsx's loader.
import { register } from "tsx/esm/api"

register()
const { run } = await import("../main.ts")
run()
