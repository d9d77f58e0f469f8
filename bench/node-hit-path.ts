/**
 * The cost of a cache hit in the Node server, against a bare Node `http` server that
 * answers the same bytes with the same headers.
 *
 *   npx tsx bench/node-hit-path.ts [--quick] [--json] [--duration-ms 5000] [--connections 100] [--rounds 2]
 *
 * Each server runs in its own child process and reports its `process.cpuUsage()` over
 * IPC; the load generator is another child (100 keep-alive connections on raw sockets,
 * one request at a time per connection, so the client costs little next to the server).
 * Runs alternate bare → herdless (hit path) → herdless (engine path), `--rounds` times; on
 * a busy machine more, shorter rounds (`--rounds 6 --duration-ms 1500`) cancel more noise.
 */
import { fork, type ChildProcess } from "node:child_process";
import { createServer, request } from "node:http";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startFragileOrigin } from "../fixtures/fragile-origin.ts";
import { parseConfig } from "../src/core/config.ts";
import { jsonLogger } from "../src/node/logger.ts";
import { startServer } from "../src/node/server.ts";
import { localStack } from "../src/node/stack.ts";

const SELF = fileURLToPath(import.meta.url);
const PATH = "/bench/page";
const HOST = "bench.test";

type Message =
  | { type: "ready"; url: string }
  | { type: "cpu"; userUs: number; systemUs: number }
  | { type: "load"; requests: number; errors: number; elapsedMs: number }
  | { type: "init"; status: number; headers: string[]; body: string };

const send = (message: Message) => process.send?.(message);

// ---- children -----------------------------------------------------------------------------

function answerCpuRequests(): void {
  process.on("message", (message: { type: string }) => {
    if (message.type !== "cpu") return;
    const usage = process.cpuUsage();
    send({ type: "cpu", userUs: usage.user, systemUs: usage.system });
  });
}

async function runHerdless(originUrl: string, fastHits: boolean): Promise<void> {
  const logger = jsonLogger("silent");
  const config = parseConfig({ origin: { url: originUrl } });
  const running = await startServer({ stack: localStack({ config, logger }), logger, port: 0, fastHits });
  answerCpuRequests();
  send({ type: "ready", url: running.url });
}

async function runBare(): Promise<void> {
  const init = await new Promise<Extract<Message, { type: "init" }>>((resolve) => process.once("message", resolve));
  const body = Buffer.from(init.body, "base64");
  const server = createServer({ keepAliveTimeout: 65_000 }, (_req, res) => {
    res.writeHead(init.status, init.headers);
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  answerCpuRequests();
  send({ type: "ready", url: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}` });
}

/** Keep-alive connections on raw sockets: write a request, parse just enough of the answer, repeat. */
async function runLoad(url: string, connections: number, durationMs: number): Promise<void> {
  const { hostname, port } = new URL(url);
  const wire = Buffer.from(`GET ${PATH} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const headEnd = Buffer.from("\r\n\r\n");
  let requests = 0;
  let errors = 0;
  const started = performance.now();
  const stopAt = started + durationMs;
  const sockets: Socket[] = [];
  await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<void>((resolve) => {
          const socket = connect({ host: hostname, port: Number(port), noDelay: true });
          sockets.push(socket);
          let buffered: Buffer = Buffer.alloc(0);
          let need = -1;
          socket.on("connect", () => socket.write(wire));
          socket.on("error", () => {
            errors++;
            resolve();
          });
          socket.on("close", () => resolve());
          socket.on("data", (chunk: Buffer) => {
            buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
            for (;;) {
              if (need < 0) {
                const end = buffered.indexOf(headEnd);
                if (end < 0) return;
                const head = buffered.toString("latin1", 0, end).toLowerCase();
                const at = head.indexOf("content-length:");
                const length = at < 0 ? 0 : Number.parseInt(head.slice(at + 15), 10);
                if (!head.startsWith("http/1.1 200")) errors++;
                need = end + 4 + length;
              }
              if (buffered.length < need) return;
              buffered = buffered.subarray(need);
              need = -1;
              if (performance.now() >= stopAt) {
                socket.destroy();
                return;
              }
              requests++;
              socket.write(wire);
            }
          });
        }),
    ),
  );
  send({ type: "load", requests, errors, elapsedMs: performance.now() - started });
}

// ---- the run ------------------------------------------------------------------------------

function child(role: string, args: string[] = []): ChildProcess {
  return fork(SELF, ["--role", role, ...args], {
    execArgv: ["--import", import.meta.resolve("tsx")],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

function next<T extends Message["type"]>(proc: ChildProcess, type: T): Promise<Extract<Message, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Message) => {
      if (message.type !== type) return;
      proc.off("message", onMessage);
      proc.off("exit", onExit);
      resolve(message as Extract<Message, { type: T }>);
    };
    const onExit = (code: number | null) => reject(new Error(`child exited with ${code} before sending ${type}`));
    proc.on("message", onMessage);
    proc.once("exit", onExit);
  });
}

async function cpuUs(server: ChildProcess): Promise<number> {
  const reply = next(server, "cpu");
  server.send({ type: "cpu" });
  const usage = await reply;
  return usage.userUs + usage.systemUs;
}

async function measure(server: ChildProcess, url: string, connections: number, durationMs: number) {
  const before = await cpuUs(server);
  const load = child("load", ["--url", url, "--connections", String(connections), "--duration-ms", String(durationMs)]);
  const result = await next(load, "load");
  const cpu = (await cpuUs(server)) - before;
  return {
    rps: result.requests / (result.elapsedMs / 1000),
    cpuUsPerRequest: cpu / Math.max(1, result.requests),
    errors: result.errors,
  };
}

function fetchOnce(url: string): Promise<{ status: number; headers: string[]; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${PATH}`, { headers: { host: HOST } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const headers: string[] = [];
        const skip = new Set(["date", "connection", "keep-alive"]);
        for (let i = 0; i < res.rawHeaders.length; i += 2)
          if (!skip.has(res.rawHeaders[i]!.toLowerCase())) headers.push(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

async function main(flags: {
  quick: boolean;
  json: boolean;
  durationMs: number;
  connections: number;
  rounds: number;
}): Promise<void> {
  const log = (line: string) => (flags.json ? undefined : process.stdout.write(`${line}\n`));
  const origin = await startFragileOrigin({ cacheControl: "max-age=86400", bodyBytes: 1024 });
  const procs = {
    herdless: child("herdless", ["--origin", origin.url]),
    engine: child("herdless", ["--origin", origin.url, "--engine-only"]),
    bare: child("bare"),
  };
  try {
    const herdlessUrl = (await next(procs.herdless, "ready")).url;
    const engineUrl = (await next(procs.engine, "ready")).url;
    await fetchOnce(herdlessUrl);
    await fetchOnce(engineUrl);
    const hit = await fetchOnce(herdlessUrl);
    const bareReady = next(procs.bare, "ready");
    procs.bare.send({ type: "init", status: hit.status, headers: hit.headers, body: hit.body.toString("base64") });
    const bareUrl = (await bareReady).url;
    const targets = [
      { name: "bare node http", proc: procs.bare, url: bareUrl },
      { name: "herdless (hit path)", proc: procs.herdless, url: herdlessUrl },
      { name: "herdless (engine path)", proc: procs.engine, url: engineUrl },
    ];
    log(
      `hit response: ${hit.status}, ${hit.body.byteLength} B body, ${hit.headers.length / 2} headers; ${flags.connections} connections, ${flags.durationMs} ms per run`,
    );
    for (const t of targets) await measure(t.proc, t.url, flags.connections, flags.quick ? 300 : 1_000);
    const runs = new Map<string, { rps: number; cpuUsPerRequest: number; errors: number }[]>(
      targets.map((t) => [t.name, []]),
    );
    for (let round = 0; round < flags.rounds; round++)
      for (const t of targets)
        runs.get(t.name)!.push(await measure(t.proc, t.url, flags.connections, flags.durationMs));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rows = targets.map((t) => {
      const r = runs.get(t.name)!;
      return {
        server: t.name,
        runsRps: r.map((x) => Math.round(x.rps)),
        rps: Math.round(mean(r.map((x) => x.rps))),
        bestRps: Math.round(Math.max(...r.map((x) => x.rps))),
        cpuUsPerRequest: Number(mean(r.map((x) => x.cpuUsPerRequest)).toFixed(2)),
        errors: r.reduce((a, x) => a + x.errors, 0),
      };
    });
    const ratio = Number((rows[1]!.rps / rows[0]!.rps).toFixed(3));
    const engineRatio = Number((rows[2]!.rps / rows[0]!.rps).toFixed(3));
    const bestRatio = Number((rows[1]!.bestRps / rows[0]!.bestRps).toFixed(3));
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify({ connections: flags.connections, durationMs: flags.durationMs, bodyBytes: hit.body.byteLength, rounds: flags.rounds, rows, ratioHerdlessToBare: ratio, ratioHerdlessToBareBestRuns: bestRatio, ratioEngineToBare: engineRatio, originRequests: origin.stats().requests }, null, 2)}\n`,
      );
      return;
    }
    log("");
    log(
      `${"server".padEnd(24)}${"runs (req/s)".padEnd(28)}${"mean req/s".padStart(12)}${"best req/s".padStart(12)}${"cpu µs/req".padStart(12)}${"errors".padStart(8)}`,
    );
    for (const r of rows)
      log(
        `${r.server.padEnd(24)}${r.runsRps.join(", ").padEnd(28)}${String(r.rps).padStart(12)}${String(r.bestRps).padStart(12)}${r.cpuUsPerRequest.toFixed(2).padStart(12)}${String(r.errors).padStart(8)}`,
      );
    log("");
    log(
      `herdless (hit path) / bare: ${ratio} on means, ${bestRatio} on best runs (target ≥ 0.9); engine path / bare: ${engineRatio}; origin requests: ${origin.stats().requests}`,
    );
  } finally {
    for (const proc of Object.values(procs)) proc.kill();
    await origin.close();
  }
}

const { values } = parseArgs({
  options: {
    role: { type: "string" },
    origin: { type: "string" },
    url: { type: "string" },
    "engine-only": { type: "boolean" },
    quick: { type: "boolean" },
    json: { type: "boolean" },
    "duration-ms": { type: "string" },
    connections: { type: "string" },
    rounds: { type: "string" },
  },
});
const connections = Number(values.connections ?? 100);
const durationMs = Number(values["duration-ms"] ?? (values.quick ? 1_500 : 5_000));
if (values.role === "herdless") await runHerdless(values.origin!, !values["engine-only"]);
else if (values.role === "bare") await runBare();
else if (values.role === "load") {
  await runLoad(values.url!, connections, durationMs);
  process.disconnect?.();
} else
  await main({
    quick: values.quick === true,
    json: values.json === true,
    durationMs,
    connections,
    rounds: Number(values.rounds ?? 2),
  });
