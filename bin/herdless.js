#!/usr/bin/env node
// The CLI is TypeScript; tsx loads it without a build step.
import { register } from "tsx/esm/api";

register();
const { run } = await import("../src/node/cli.ts");
await run(process.argv.slice(2));
