/**
 * Start-up, for the report: the Worker bundle's size (raw and gzipped, as a deploy uploads
 * it) and a fresh workerd's start plus first request against a bare Worker's
 * (worker-startup.ts, run as a child with `--experimental-vm-modules` so the bundle's own
 * parse + link + evaluate CPU is measured too), and the Node CLI's start (built as the package
 * is) until its first answer, against a bare `node:http` server's.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { builtCli } from "./node-build.ts";
import { CHILD_ENV, ROOT, TMP_DIR } from "./processes.ts";
import type { WorkerStartup } from "./worker-startup.ts";
import { mkdirSync, writeFileSync } from "node:fs";

export interface Startup {
  worker?: WorkerStartup;
  workerError?: string;
  node?: { rounds: number; herdlessMs: number; bareMs: number };
  nodeError?: string;
}

/** Under 250 KB: what every isolate parses before its first request (issue 17). */
export const BUNDLE_LIMIT_BYTES = 250_000;

const BARE_NODE = `require("node:http").createServer((q, s) => s.end("ok")).listen(0, "127.0.0.1", function () { console.log("bare listening " + this.address().port); });`;

/** Spawns `args`, waits for `ready` on its output, asks `path` once; resolves with the ms from spawn to that answer. */
async function timeToFirstAnswer(args: string[], ready: RegExp, path: string): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd: ROOT, env: CHILD_ENV, stdio: ["ignore", "pipe", "pipe"] });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      let output = "";
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8");
        const match = ready.exec(output);
        if (match?.[1] !== undefined) resolve(match[1]);
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.once("exit", (code) =>
        reject(new Error(`exited with ${code} before it listened:\n${output.slice(-1000)}`)),
      );
    });
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    await res.arrayBuffer();
    return performance.now() - started;
  } finally {
    child.kill("SIGKILL");
  }
}

async function nodeStartup(rounds: number): Promise<Startup["node"]> {
  mkdirSync(TMP_DIR, { recursive: true });
  const config = join(TMP_DIR, "startup.json");
  // An origin that is never asked: the first answer is the metrics endpoint, served by herdless itself.
  writeFileSync(config, JSON.stringify({ origin: { url: "http://127.0.0.1:9" }, log: { level: "info" } }));
  const cli = builtCli();
  const herdless: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < rounds; i++) {
    herdless.push(
      await timeToFirstAnswer(
        [cli, "--config", config, "--port", "0"],
        /"msg":"herdless listening".*?"port":(\d+)/,
        "/__herdless/metrics",
      ),
    );
    bare.push(await timeToFirstAnswer(["-e", BARE_NODE], /bare listening (\d+)/, "/"));
  }
  const median = (xs: number[]) => Math.round([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN);
  return { rounds, herdlessMs: median(herdless), bareMs: median(bare) };
}

function workerStartup(rounds: number): Promise<WorkerStartup> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "--experimental-vm-modules",
        "--no-warnings",
        "--import",
        "tsx",
        join(ROOT, "bench/worker-startup.ts"),
        "--json",
        "--rounds",
        String(rounds),
      ],
      { cwd: ROOT, env: CHILD_ENV, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.once("exit", (code) => {
      const line = stdout.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) resolve(JSON.parse(line) as WorkerStartup);
      else reject(new Error(`worker-startup.ts failed (${code}):\n${stderr.slice(-1500)}`));
    });
  });
}

export async function measureStartup(quick: boolean): Promise<Startup> {
  const out: Startup = {};
  try {
    out.worker = await workerStartup(quick ? 3 : 7);
  } catch (error) {
    out.workerError = error instanceof Error ? error.message : String(error);
  }
  try {
    out.node = await nodeStartup(quick ? 3 : 7);
  } catch (error) {
    out.nodeError = error instanceof Error ? error.message : String(error);
  }
  return out;
}
