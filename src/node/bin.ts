#!/usr/bin/env node
// `npx herdless`: the published package runs this file built to dist/node/bin.js.
import { run } from "./cli.ts";

await run(process.argv.slice(2));
