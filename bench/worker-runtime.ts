/** Bundles the herdless Worker once per bench run and starts it under workerd (see worker-host.ts). */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Sample } from "./bare-node.ts";
import { CHILD_ENV, ROOT, startTsServer, type Server } from "./processes.ts";
import type { DoStorage, WorkerHostSpec } from "./worker-host.ts";

export const WORKER_DATA_CENTERS = 4;
const BUNDLE_DIR = join(ROOT, "bench/results/tmp/worker-bundle");

let bundled: ReturnType<typeof bundleWorker> | undefined;
let doStorage: DoStorage = "memory";

/** Where every Worker runtime of this bench run keeps its Durable Object storage (`--do-storage`). */
export function useDoStorage(storage: DoStorage): void {
  doStorage = storage;
}

/** `wrangler deploy --dry-run --outdir`: the same bundle a deploy would upload. */
export function bundleWorker(): { path: string; compatibilityDate: string; compatibilityFlags: string[] } {
  if (bundled) return bundled;
  const wrangler = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
  const out = spawnSync(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", BUNDLE_DIR], {
    cwd: ROOT,
    env: CHILD_ENV,
    encoding: "utf8",
    timeout: 120_000,
  });
  const path = join(BUNDLE_DIR, "worker.js");
  if (out.status !== 0 || !existsSync(path))
    throw new Error(`wrangler could not bundle the Worker:\n${(out.stderr + out.stdout).slice(-2000)}`);
  const wranglerConfig = readFileSync(join(ROOT, "wrangler.jsonc"), "utf8");
  const compatibilityDate = /"compatibility_date"\s*:\s*"([^"]+)"/.exec(wranglerConfig)?.[1] ?? "2026-04-20";
  // The Worker as deployed: `enable_request_signal` tells it of a client that hung up.
  const flags = /"compatibility_flags"\s*:\s*\[([^\]]*)\]/.exec(wranglerConfig)?.[1] ?? "";
  const compatibilityFlags = [...flags.matchAll(/"([^"]+)"/g)].map((match) => match[1]!);
  bundled = { path, compatibilityDate, compatibilityFlags };
  return bundled;
}

export interface Workers {
  server: Server;
  dataCenters: string[];
  /** one bare Worker per data center, each its own isolate (worker-host.ts bareWorker) */
  bare: string[];
  /** with `floor`, one fetch-once Worker per data center, the floor under a cold key's wave (worker-host.ts floorWorker) */
  floor: string[];
}

export async function startWorkers(options: {
  originUrl: string;
  config: Record<string, unknown>;
  sample?: Sample;
  /** also the fetch-once floor Workers (bench/tail-floor.ts) */
  floor?: boolean;
  /** the floor Workers fetch again once their answer is this old (ms); default never */
  floorTtlMs?: number;
  /** false: herdless's data centers without the bench's meter (worker-meter.js); default true */
  meter?: boolean;
  /** another build of the Worker than this tree's (bench/tail-floor.ts `herdless:<path>`) */
  bundlePath?: string;
}): Promise<Workers> {
  const bundle = options.bundlePath ? { ...bundleWorker(), path: options.bundlePath } : bundleWorker();
  const spec: WorkerHostSpec = {
    bundlePath: bundle.path,
    compatibilityDate: bundle.compatibilityDate,
    compatibilityFlags: bundle.compatibilityFlags,
    originUrl: options.originUrl,
    config: options.config,
    dataCenters: WORKER_DATA_CENTERS,
    ...(options.sample ? { sample: options.sample } : {}),
    ...(options.floor ? { floor: true } : {}),
    ...(options.floorTtlMs !== undefined ? { floorTtlMs: options.floorTtlMs } : {}),
    ...(options.meter === false ? { meter: false } : {}),
    // The request log then records when each bare and floor handler ran (load-generator.ts).
    ...(process.env.BENCH_REQUEST_LOG ? { trace: true } : {}),
  };
  // Made and removed here: the host is stopped by signalling its process group, workerd with it.
  const storageDir =
    doStorage === "memory" && existsSync("/dev/shm") ? mkdtempSync("/dev/shm/herdless-bench-") : undefined;
  if (storageDir !== undefined) spec.storageDir = storageDir;
  const removeStorage = (): void => {
    if (storageDir !== undefined) rmSync(storageDir, { recursive: true, force: true });
  };
  let started: Server;
  try {
    started = await startTsServer(
      "workerd",
      "bench/worker-host.ts",
      [JSON.stringify(spec)],
      /workers listening (\{.*\})/,
    );
  } catch (error) {
    removeStorage();
    throw error;
  }
  const server: Server = {
    ...started,
    stop: async () => {
      await started.stop();
      removeStorage();
    },
  };
  const urls = JSON.parse(server.ready) as { dataCenters: string[]; bare: string[]; floor: string[] };
  return { server, dataCenters: urls.dataCenters, bare: urls.bare, floor: urls.floor };
}
