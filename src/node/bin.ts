#!/usr/bin/env node
// `npx herdless`: the published package runs this file built to dist/node/bin.js. It runs
// again as the worker thread that serves with a heap sized for the cache (bounded-heap.ts).
import { run } from "./cli.ts";

await run(process.argv.slice(2), new URL(import.meta.url));
