/**
 * One rung of the hit-path ladder (hit-ladder.ts): a server between the bare node:http
 * baseline (bare-node.ts) and herdless's CLI, one step closer to herdless each. Built to plain
 * JavaScript next to the built CLI (`builtLadderServer` in hit-ladder.ts), so herdless's
 * modules are imported from the build, as the CLI runs them, never under tsx.
 *
 *   node ladder-server.mjs '{"rung":{…},"sample":{…},"config":{…}}'
 *
 * A rung says where it serves (the main thread, or a worker thread with herdless's heap
 * limits or Node's defaults), which server shell (bare's `createServer` or herdless's
 * options and listeners, copied from src/node/server.ts), whether herdless's modules are
 * loaded and a stack built beside the bare handler, or herdless's own `startServer`.
 */
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { isMainThread, Worker, workerData } from "node:worker_threads";
import type { Sample } from "./bare-node.ts";

export interface Rung {
  /** Where the server runs: the main thread, or a worker with herdless's heap limits for `config` or with Node's. */
  thread: "main" | "worker-herdless-limits" | "worker-default-limits";
  /** `bare`: bare-node.ts's server. `herdless-shell`: src/node/server.ts's createServer options and listeners, bare's handler. `herdless`: herdless's startServer + localStack. */
  server: "bare" | "herdless-shell" | "herdless";
  /** With a bare handler: import herdless's server and stack modules and build a stack (unused), as herdless's process holds them. */
  loadHerdless?: boolean;
  /**
   * In `herdless-shell` with `loadHerdless`, what answers: `bare` (bare-node.ts's handler),
   * `bare-no-resume` (the same without `req.resume()`, as herdless's handler leaves the
   * request to Node), `checks` (herdless's handler's work before the hit path: the latency
   * timer, the field scan, the Host and target checks, then the bare answer), `hit-path`
   * (those checks, then herdless's HitPath; its misses go to herdless's handler).
   */
  handler?: "bare" | "bare-no-resume" | "checks" | "hit-path";
  /**
   * Before serving, one GET to the origin through node:http's client, its body read (as
   * herdless's fill does): the process's Node code has then seen a ClientRequest and a
   * client-side IncomingMessage beside the server's objects.
   */
  clientCall?: boolean;
}

interface Args {
  rung: Rung;
  sample: Sample;
  /** The herdless config (origin included), for the stack and the heap limits. */
  config: Record<string, unknown>;
}

type ServerModule = typeof import("../src/node/server.ts");
type StackModule = typeof import("../src/node/stack.ts");
type ConfigModule = typeof import("../src/core/config.ts");
type LoggerModule = typeof import("../src/node/logger.ts");
type HeapModule = typeof import("../src/node/bounded-heap.ts");
type HitPathModule = typeof import("../src/node/hit-path.ts");
type RequestFieldsModule = typeof import("../src/node/request-fields.ts");
type HandlerModule = typeof import("../src/node/handler.ts");
type RequestCheckModule = typeof import("../src/core/http/request-check.ts");
type Stack = import("../src/node/stack.ts").Stack;
type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** A module of the built package, next to this file in the build (bench/results/tmp/dist). */
function built<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href) as Promise<T>;
}

function bareHandler(sample: Sample, resume = true): Listener {
  const body = Buffer.from(sample.bodyBase64, "base64");
  const head: string[] = [];
  for (const [name, value] of sample.headers) head.push(name, value);
  head.push("content-length", String(body.length));
  if (!resume)
    return (_req, res) => {
      res.writeHead(sample.status, head);
      res.end(body);
    };
  return (req, res) => {
    req.resume();
    res.writeHead(sample.status, head);
    res.end(body);
  };
}

/** The `checks` and `hit-path` handlers: herdless's handler's steps (src/node/handler.ts), one at a time. */
async function herdlessSteps(stack: Stack, sample: Sample, step: "checks" | "hit-path"): Promise<Listener> {
  const [{ HitPath }, { emptyScan, scanFields }, { createHandler }, { hostCountRefusal, targetRefusal }] =
    await Promise.all([
      built<HitPathModule>("./node/hit-path.js"),
      built<RequestFieldsModule>("./node/request-fields.js"),
      built<HandlerModule>("./node/handler.js"),
      built<RequestCheckModule>("./core/http/request-check.js"),
    ]);
  const answer = bareHandler(sample, false);
  const full = createHandler({ stack });
  const hits = new HitPath(stack);
  const scan = emptyScan();
  return (req, res) => {
    const startedAt = stack.metrics.started();
    const fields = scanFields(req.rawHeaders, scan);
    const refused =
      hostCountRefusal(fields.hosts, fields.host) ?? targetRefusal(req.url ?? "/", fields.host ?? "localhost");
    if (refused) throw new Error("refused");
    if (step === "checks") return answer(req, res);
    if (!hits.serve(req, res, startedAt, fields)) full(req, res);
  };
}

/** One GET to `origin` through node:http's client, its body read to the end. */
function clientCall(origin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    get(new URL("/hit/one?bytes=1024", origin), (res) => {
      res.on("data", () => undefined);
      res.once("end", resolve);
      res.once("error", reject);
    }).once("error", reject);
  });
}

async function serve(args: Args): Promise<number> {
  const { rung, sample } = args;
  if (rung.clientCall === true) await clientCall((args.config.origin as { url: string }).url);
  if (rung.server === "herdless" || rung.loadHerdless === true) {
    const [{ startServer }, { localStack }, { parseConfig }, { jsonLogger }] = await Promise.all([
      built<ServerModule>("./node/server.js"),
      built<StackModule>("./node/stack.js"),
      built<ConfigModule>("./core/config.js"),
      built<LoggerModule>("./node/logger.js"),
    ]);
    const config = parseConfig(args.config);
    const logger = jsonLogger("warn");
    const stack = localStack({ config, logger });
    if (rung.server === "herdless") return (await startServer({ stack, logger, port: 0 })).port;
    // Kept reachable, as herdless's server keeps its stack.
    (globalThis as { ladderStack?: unknown }).ladderStack = stack;
    if (rung.handler === "checks" || rung.handler === "hit-path")
      return listen(herdlessShell(await herdlessSteps(stack, sample, rung.handler)));
  }
  const handler = bareHandler(sample, rung.handler !== "bare-no-resume");
  const server =
    rung.server === "bare"
      ? createServer((req, res) => handler(req, res))
      : herdlessShell((req, res) => handler(req, res));
  if (rung.server === "bare") server.keepAliveTimeout = 30_000;
  return listen(server);
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

/** src/node/server.ts's server around `handler`: its options, the closing check, the CONNECT listener, undici loaded. */
function herdlessShell(handler: Listener): Server {
  void [globalThis.Response, globalThis.Headers, globalThis.ReadableStream];
  const closing: Promise<void> | undefined = undefined as Promise<void> | undefined;
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    if (closing) res.shouldKeepAlive = false;
    handler(req, res);
  });
  server.on("connect", (_req: IncomingMessage, socket: Duplex) =>
    socket.end("HTTP/1.1 405 Method Not Allowed\r\n\r\n"),
  );
  return server;
}

async function main(): Promise<void> {
  if (!isMainThread) {
    const port = await serve(workerData as Args);
    process.stderr.write(`ladder listening on http://127.0.0.1:${port}\n`);
    return;
  }
  const args = JSON.parse(process.argv[2] ?? "{}") as Args;
  if (args.rung.thread === "main") {
    const port = await serve(args);
    process.stderr.write(`ladder listening on http://127.0.0.1:${port}\n`);
    return;
  }
  let resourceLimits: { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number } | undefined;
  if (args.rung.thread === "worker-herdless-limits") {
    const [{ heapLimitsFor }, { parseConfig }] = await Promise.all([
      built<HeapModule>("./node/bounded-heap.js"),
      built<ConfigModule>("./core/config.js"),
    ]);
    resourceLimits = heapLimitsFor(parseConfig(args.config).cache.maxBytes);
  }
  const worker = new Worker(new URL(import.meta.url), {
    workerData: args,
    ...(resourceLimits ? { resourceLimits } : {}),
  });
  worker.once("exit", (code) => process.exit(code));
}

await main();
