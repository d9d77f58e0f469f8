import { getHeapStatistics } from "node:v8";
import type { Config } from "../core/config.ts";
import { isMainThread, parentPort, resourceLimits, Worker, workerData, type WorkerOptions } from "node:worker_threads";
import { watchLauncher } from "./launcher.ts";

const MiB = 1024 * 1024;

/**
 * The old generation holds the cache (its charge is what entries occupy, see entrySize) plus
 * this share of it and a fixed part for the modules and requests in flight: the room V8
 * needs to collect without working all the time. Measured on a flood of 200-byte pages
 * through a 64 MiB cache (76 MiB live at the end): a 104 MiB limit cost 1.9 ms of CPU a
 * request against 1.0 unbounded, a 96 MiB one 3.1 ms.
 */
const OLD_GENERATION_SHARE = 1.25;
const OLD_GENERATION_FIXED_MIB = 24;
/**
 * The young generation (V8 counts three semi-spaces for it). Node's default is 48 MiB (16 MiB
 * semi-spaces). A small cache gets half of it, so its share of RSS halves: a flood through a
 * 64 MiB cache peaked at 196 MiB, its bound. From a cache of `FULL_YOUNG_FROM` on, the 16 MiB
 * more is a small share of the budget and buys the hit path less collecting: on 1 KiB hits
 * the serving thread spent 0.9 µs per request in scavenges with 48 MiB against 1.6 µs with
 * 24 (2026-12-01, alternated, one process each; a bare node:http server 0.5 µs).
 */
const SMALL_YOUNG_GENERATION_MIB = 24;
const FULL_YOUNG_GENERATION_MIB = 48;
const FULL_YOUNG_FROM = 256 * MiB;

export interface HeapLimits {
  maxOldGenerationSizeMb: number;
  maxYoungGenerationSizeMb: number;
}

/**
 * The V8 heap for a server whose in-memory cache may hold `maxBytes`. Without a limit V8
 * sizes the heap from the machine (4 GiB on a 16 GiB host) and lets garbage pile up to
 * several times the live data before it collects: a flood of small entries through a
 * 64 MiB cache held ~70 MiB live but ~300 MiB of heap (RSS 406 MiB). The cache is the bulk
 * of the live data, so the old generation is sized from its budget; bodies live outside it,
 * in ArrayBuffers.
 *
 * @example
 * heapLimitsFor(64 * 1024 * 1024); // { maxOldGenerationSizeMb: 104, maxYoungGenerationSizeMb: 24 }
 * heapLimitsFor(256 * 1024 * 1024); // { maxOldGenerationSizeMb: 344, maxYoungGenerationSizeMb: 48 } (the default cache)
 */
export function heapLimitsFor(maxBytes: number): HeapLimits {
  return {
    maxOldGenerationSizeMb: Math.ceil((OLD_GENERATION_SHARE * maxBytes) / MiB) + OLD_GENERATION_FIXED_MIB,
    maxYoungGenerationSizeMb: maxBytes >= FULL_YOUNG_FROM ? FULL_YOUNG_GENERATION_MIB : SMALL_YOUNG_GENERATION_MIB,
  };
}

/**
 * The heap one request waiting on a fill holds: its socket, parser and request, the engine's
 * view of it and the awaits it sits in. Measured with 3,000 requests on one held cold page
 * (the built package, heap after a full collection): 12.6 KB each for a curl-like request,
 * 15.4 KB for a browser's (15 fields, 700 bytes of head).
 */
const WAITER_BYTES = 16 * 1024;
/** The heap a serving process holds before any request: its modules, config and server (10.7 MiB measured). */
const SERVING_BASELINE_BYTES = 16 * MiB;
/** Node's young generation outside a worker with resource limits (three 16 MiB semi-spaces on 64-bit). */
const DEFAULT_YOUNG_BYTES = 48 * MiB;
/** The least the derived bound allows, whatever the heap: a few hundred KB. */
const MIN_WAITING = 32;

/**
 * The default of `origin.maxWaiting` for a process whose cache may hold `maxBytes`: half of
 * what the old generation has beside the cache and the server itself, in waiting requests.
 * The old generation is where long waits end up; it is the heap limit V8 reports less the
 * young generation (the worker's own limit, or Node's 48 MiB). Past it a few thousand
 * clients waiting on one slow cold page filled the heap and the process exited (2,600 at a
 * 16 MiB cache); the other half stays for everything else in flight and for the collector.
 *
 * @example
 * maxWaitingFor(256 * 1024 * 1024); // 2304 under npx herdless (a 344 MiB old generation)
 */
export function maxWaitingFor(
  maxBytes: number,
  heapLimitBytes = getHeapStatistics().heap_size_limit,
  youngBytes = (resourceLimits.maxYoungGenerationSizeMb ?? 0) * MiB || DEFAULT_YOUNG_BYTES,
): number {
  const spare = heapLimitBytes - youngBytes - maxBytes - SERVING_BASELINE_BYTES;
  return Math.max(MIN_WAITING, Math.floor(spare / 2 / WAITER_BYTES));
}

/** `origin.maxWaiting`, or what this process's heap has room for ({@link maxWaitingFor}). */
export function waitingLimit(config: Config): number {
  return config.origin.maxWaiting ?? maxWaitingFor(config.cache.maxBytes);
}

const HEAP_FLAGS = /(^|\s)--(max[-_]old[-_]space[-_]size|max[-_]semi[-_]space[-_]size|max[-_]heap[-_]size)\b/;

/** True when the operator sized the heap (`node --max-old-space-size=…`, or in NODE_OPTIONS): herdless leaves it alone. */
export function heapSizedByOperator(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return execArgv.some((arg) => HEAP_FLAGS.test(arg)) || HEAP_FLAGS.test(nodeOptions ?? "");
}

/** What the main thread tells the serving worker, and what the worker answers. */
type ToWorker = { stop: string };

/** How long a worker that has reported its exit code may take to end by itself (its last log lines) before it is ended. */
const WORKER_LINGER_MS = 1_000;
type FromWorker = { exitCode: number };

/** In the serving worker: the argv the main thread was given. Undefined elsewhere (also in a worker of the embedding application). */
export function workerArgv(): string[] | undefined {
  if (isMainThread) return undefined;
  return (workerData as { herdlessServeArgv?: string[] } | null)?.herdlessServeArgv;
}

/**
 * In the serving worker: resolves with the signal the main thread received (SIGTERM, SIGINT),
 * which the worker's server then drains for. The port is listened to only from the call on,
 * so a worker that never serves (a port in use) still ends.
 */
export function stopRequested(): Promise<string> {
  const port = parentPort;
  if (!port) return new Promise<string>(() => undefined);
  return new Promise((resolve) => port.once("message", (message: ToWorker) => resolve(message.stop)));
}

/** In the serving worker: hands the main thread the exit code of the command. */
export function reportExitCode(exitCode: number): void {
  parentPort?.postMessage({ exitCode } satisfies FromWorker);
}

/**
 * Runs the CLI module `entry` in a worker thread whose V8 heap is bounded by `limits`, with
 * the same `argv`, and resolves with its exit code. Node sets a heap size only when an
 * isolate is created (`v8.setFlagsFromString("--max-old-space-size")` at run time does
 * nothing), and `npx herdless` cannot put flags before its script; a worker's
 * `resourceLimits` are Node's documented way to size a heap from inside the process, which
 * keeps one process and one PID (no child to orphan). SIGTERM and SIGINT are passed on (and
 * npm's going, under `npx herdless`: launcher.ts); the
 * worker drains and ends. A worker that runs out of heap ends with a message naming the limit.
 */
export function serveInBoundedHeap(
  entry: URL,
  argv: string[],
  limits: HeapLimits,
  stderr: (text: string) => void,
): Promise<number> {
  const worker = workerRunning(entry, { workerData: { herdlessServeArgv: argv }, resourceLimits: limits });
  let exitCode: number | undefined;
  let failure: string | undefined;
  worker.on("message", (message: FromWorker) => {
    exitCode = message.exitCode;
    // The command is over: what it left open (a Redis connection a failed start had opened,
    // reconnecting forever) must not keep the process up, deaf to SIGTERM, as it did.
    setTimeout(() => void worker.terminate(), WORKER_LINGER_MS).unref();
  });
  worker.on("error", (error: Error & { code?: string }) => {
    failure =
      error.code === "ERR_WORKER_OUT_OF_MEMORY"
        ? `the JavaScript heap reached its limit of ${limits.maxOldGenerationSizeMb} MiB (sized from cache.maxBytes); ` +
          "run node --max-old-space-size=<MiB> to size it yourself"
        : (error.stack ?? String(error));
  });
  const forward = (signal: NodeJS.Signals) => () => worker.postMessage({ stop: signal } satisfies ToWorker);
  const onTerm = forward("SIGTERM");
  const onInt = forward("SIGINT");
  process.once("SIGTERM", onTerm);
  process.once("SIGINT", onInt);
  const unwatch = watchLauncher((reason) => worker.postMessage({ stop: reason } satisfies ToWorker));
  return new Promise((resolve) =>
    worker.once("exit", (code) => {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      unwatch();
      if (failure !== undefined) stderr(`herdless: ${failure}\n`);
      resolve(failure !== undefined ? 1 : (exitCode ?? code));
    }),
  );
}

/**
 * A worker running `entry`. From source under tsx (development, the tests, the bench) a
 * worker does not get the main thread's loader hooks on Node 20, so it registers tsx first.
 */
function workerRunning(entry: URL, options: WorkerOptions): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, options);
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const code = `import(${tsx}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}
