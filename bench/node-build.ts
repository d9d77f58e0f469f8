/**
 * The Node CLI as users run it (`npx herdless`): src/core and src/node built to JavaScript
 * as the package is (tsconfig.build.json), once per bench run, into the bench's scratch
 * folder. Not from source under tsx: its loader thread, its per-closure `__name` calls and
 * its ~30 MiB per thread would be counted against herdless.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { ROOT } from "./processes.ts";

/** Where the built files go: a profile's functions under it are herdless's own. */
export const NODE_DIST = join(ROOT, "bench/results/tmp/dist");

let built: string | undefined;

/** Builds (once per process) and returns the path of the built CLI, `dist/node/bin.js`. */
export function builtCli(): string {
  if (built !== undefined) return built;
  const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
  const args = [tsc, "-p", join(ROOT, "tsconfig.build.json"), "--outDir", NODE_DIST, "--declaration", "false"];
  const out = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  if (out.status !== 0) throw new Error(`building the Node CLI failed:\n${out.stdout}${out.stderr}`);
  built = join(NODE_DIST, "node/bin.js");
  return built;
}

let bare: string | undefined;

/**
 * The bare node:http baseline (bench/bare-node.ts) as plain JavaScript, for `node` without
 * tsx, as herdless itself runs: under `--import tsx` the same server measured 37–41 µs of CPU
 * per request against 29–32 µs built (2026-11-30, alternated, 3 processes each; perf puts the
 * difference in V8's slow path for Node's `nextTick` object literal, which the tsx process
 * took), so the baseline was weaker than the server it stands for. It imports only node:*.
 */
export function builtBareNode(): string {
  if (bare !== undefined) return bare;
  const source = readFileSync(join(ROOT, "bench/bare-node.ts"), "utf8");
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  mkdirSync(NODE_DIST, { recursive: true });
  bare = join(NODE_DIST, "bare-node.mjs");
  writeFileSync(bare, outputText);
  return bare;
}
