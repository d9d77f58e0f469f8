/**
 * `npm run bench -- --scenario memory [--quick]`
 *
 * The memory bound of a Node process (issue 11 #6): a flood of distinct URLs, each cached
 * once and never asked again, through the herdless CLI with `cache.maxBytes` 64 MiB. Every
 * structure that grows with the number of keys (entries, lease fences, URL memos, hit-header
 * memos, metrics) must be bounded or expire, and the V8 heap is sized from the budget, so
 * the process's resident memory must settle below 1.5 × maxBytes + 100 MiB however many
 * URLs pass. The CLI runs as users run it (`npx herdless`): built to JavaScript first, not
 * from source under tsx (whose loader adds ~30 MiB to each thread). The RSS of the process
 * is read from /proc every 250 ms; the peak and the final value are reported (and written
 * to bench/results/memory.json), with the cache's own count of entries and bytes and the
 * CPU the process spent per request.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtCli } from "./node-build.ts";
import { startServer } from "./processes.ts";

const MiB = 1024 * 1024;
const MAX_BYTES = 64 * MiB;
const LIMIT_BYTES = 1.5 * MAX_BYTES + 100 * MiB;
const TOKEN = "bench-memory-flood-token-0123";

export interface MemoryFloodResult {
  urls: number;
  bodyBytes: number;
  seconds: number;
  requestsPerSecond: number;
  maxBytes: number;
  limitBytes: number;
  rssStartBytes: number;
  rssPeakBytes: number;
  rssEndBytes: number;
  /** V8's heap_size_limit in the serving thread, from the CLI's listening line. */
  heapLimitMiB: number;
  cpuMsPerRequest: number;
  cache: { entries: number; bytes: number; evictions: number };
  originRequests: number;
  errors: number;
  withinBound: boolean;
  nodeFlags: string[];
}

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}

/** Runs the flood; `quick` floods 40,000 URLs instead of 400,000. */
export async function memoryFlood(
  quick: boolean,
  log: (line: string) => void,
  nodeFlags: string[] = [],
): Promise<MemoryFloodResult> {
  const urls = quick ? 40_000 : 400_000;
  const bodyBytes = 200;
  // A fast origin: every URL is a small cacheable page (the cost per entry is the point).
  let originRequests = 0;
  const body = Buffer.alloc(bodyBytes, "x");
  const origin = createServer((_req, res) => {
    originRequests++;
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "public, max-age=3600",
      "content-length": String(body.length),
    });
    res.end(body);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;

  const dir = mkdtempSync(join(tmpdir(), "herdless-memory-"));
  const configFile = join(dir, "herdless.config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      origin: { url: originUrl, maxConcurrency: 64 },
      cache: { maxBytes: MAX_BYTES },
      admin: { token: TOKEN },
      log: { level: "warn" },
    }),
  );
  const server = await startServer({
    name: "herdless",
    command: process.execPath,
    args: [...nodeFlags, builtCli(), "--config", configFile, "--port", "0", "--log-level", "info"],
    readyPattern: /(\{[^\n]*"msg":"herdless listening"[^\n]*\})/,
  });
  const listening = JSON.parse(server.ready) as { url: string; heapLimitMiB: number };
  const target = new URL(listening.url);
  const rssStartBytes = rssOf(server.pgid);
  let rssPeakBytes = rssStartBytes;
  const sampler = setInterval(() => {
    rssPeakBytes = Math.max(rssPeakBytes, rssOf(server.pgid));
  }, 250);

  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const get = (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request({ host: target.hostname, port: target.port, path, agent, headers }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });

  let next = 0;
  let errors = 0;
  const started = Date.now();
  const worker = async (): Promise<void> => {
    while (next < urls) {
      const i = next++;
      // Realistic flood URLs: a path and a query that differ per request.
      const res = await get(`/articles/${i}?utm_campaign=flood&page=${i}`).catch(() => ({ status: 0, text: "" }));
      if (res.status !== 200) errors++;
      if (i % 50_000 === 0 && i > 0) log(`memory: ${i} URLs, rss ${(rssOf(server.pgid) / MiB).toFixed(0)} MiB`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const seconds = (Date.now() - started) / 1000;
  // Let the process settle (timers of the last fills, a GC) before the final reading.
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  clearInterval(sampler);
  const rssEndBytes = rssOf(server.pgid);
  const cpuMs = server.cpuMs();
  rssPeakBytes = Math.max(rssPeakBytes, rssEndBytes);
  const stats = JSON.parse((await get("/__herdless/stats", { authorization: `Bearer ${TOKEN}` })).text) as {
    cache: MemoryFloodResult["cache"];
  };
  agent.destroy();
  await server.stop();
  await new Promise((resolve) => origin.close(resolve));

  return {
    urls,
    bodyBytes,
    seconds,
    requestsPerSecond: Math.round(urls / seconds),
    maxBytes: MAX_BYTES,
    limitBytes: LIMIT_BYTES,
    rssStartBytes,
    rssPeakBytes,
    rssEndBytes,
    heapLimitMiB: listening.heapLimitMiB,
    cpuMsPerRequest: Math.round((100 * cpuMs) / urls) / 100,
    cache: stats.cache,
    originRequests,
    errors,
    withinBound: rssPeakBytes <= LIMIT_BYTES,
    nodeFlags,
  };
}

export function memoryReport(r: MemoryFloodResult): string {
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  return [
    `## memory: ${r.urls.toLocaleString("en")} distinct URLs through one Node process, cache.maxBytes ${mib(r.maxBytes)}`,
    "",
    `| | value |`,
    `|---|---|`,
    `| flood | ${r.urls} URLs (${r.bodyBytes} B bodies) in ${r.seconds.toFixed(1)} s, ${r.requestsPerSecond} req/s, ${r.errors} errors, ${r.originRequests} origin requests |`,
    `| cache at the end | ${r.cache.entries} entries, ${mib(r.cache.bytes)} charged, ${r.cache.evictions} evictions |`,
    `| RSS start / peak / end | ${mib(r.rssStartBytes)} / ${mib(r.rssPeakBytes)} / ${mib(r.rssEndBytes)} |`,
    `| V8 heap limit | ${r.heapLimitMiB} MiB (Node flags: ${r.nodeFlags.join(" ") || "none"}) |`,
    `| CPU of the herdless process | ${r.cpuMsPerRequest} ms a request |`,
    `| bound (1.5 × maxBytes + 100 MiB) | ${mib(r.limitBytes)}: ${r.withinBound ? "held" : "EXCEEDED"} |`,
    "",
  ].join("\n");
}
