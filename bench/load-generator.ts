/**
 * The load generator: its own process, so it never shares an event loop with a server.
 *
 *   node --import tsx bench/load-generator.ts '<LoadSpec as JSON>'
 *
 * Opens `connections` keep-alive sockets, runs one request loop per socket (for a fixed
 * duration, or a fixed number of requests each), and prints one LoadResult JSON line on
 * stdout when done.
 */
import { writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { LatencyHistogram } from "./histogram.ts";
import { rawConnection } from "./raw-load.ts";
import type { LoadResult, LoadSpec } from "./types.ts";

interface Outcome {
  status: number;
  retryAfter: boolean;
  cacheStatus: string;
  trace?: string;
  flushedAt?: number;
  /** when the first body byte arrived (hrtime ns), if any did */
  firstByteNs?: bigint;
}

/**
 * `BENCH_REQUEST_LOG=/tmp/x`: every request of each load is also written to `/tmp/x-<start ms>`,
 * one line each: ms from the start of the load to its sending, its latency in ms, its
 * Cache-Status class, when it was sent (epoch ms), the answer's `x-bench-trace` header (`-`
 * without one), the connection's index, and when its bytes were handed to the kernel (epoch
 * ms, the request's `finish`). What a percentile hides: when the slowest requests were sent (a
 * spike's first wave, an expiry), what they were (bench/results/tail.md), and, where the
 * Worker stamps `t0`/`t1` in `x-bench-trace` (the bare and floor Workers under this variable,
 * worker-host.ts), whether a slow one waited before its handler ran, in it, or after it.
 */
const REQUEST_LOG = process.env.BENCH_REQUEST_LOG;

class Tally {
  readonly histogram = new LatencyHistogram();
  readonly lines: string[] = [];
  readonly ttfb = new LatencyHistogram();
  /** latency by Cache-Status class: whether the tail is hits (the machine) or waits on a fill */
  readonly byClass = new Map<string, LatencyHistogram>();
  breakerOpen = 0;
  readonly byStatus: Record<string, number> = {};
  readonly byCacheStatus: Record<string, number> = {};
  /** Answers by Cache-Status class to the requests sent after `settleMs`. */
  readonly settledByCacheStatus: Record<string, number> = {};
  settledRequests = 0;
  readonly perSecond = new Map<number, { requests: number; errors: number }>();
  ok = 0;
  shed = 0;
  errors = 0;
  networkErrors = 0;
  readonly networkErrorSamples = new Set<string>();

  constructor(
    private readonly startedAt: number,
    private readonly settleAt = Infinity,
  ) {}

  /** `sentAt`: when the request was sent (epoch ms), to tell answers after `settleMs` apart. */
  add(outcome: Outcome | Error, startedNs: bigint, sentAt?: number, connection = -1): void {
    const settled = sentAt !== undefined && sentAt >= this.settleAt;
    if (settled) this.settledRequests++;
    const latencyUs = Number(process.hrtime.bigint() - startedNs) / 1000;
    this.histogram.record(latencyUs);
    const second = Math.floor((Date.now() - this.startedAt) / 1000);
    const slot = this.perSecond.get(second) ?? { requests: 0, errors: 0 };
    slot.requests++;
    this.perSecond.set(second, slot);
    if (outcome instanceof Error) {
      this.networkErrors++;
      if (this.networkErrorSamples.size < 5) this.networkErrorSamples.add(outcome.message);
      this.errors++;
      slot.errors++;
      bump(this.byStatus, "network");
      return;
    }
    bump(this.byStatus, String(outcome.status));
    if (outcome.cacheStatus.includes("detail=breaker-open")) this.breakerOpen++;
    if (outcome.status < 300 && outcome.firstByteNs !== undefined)
      this.ttfb.record(Number(outcome.firstByteNs - startedNs) / 1000);
    const kind = cacheStatusClass(outcome.cacheStatus);
    if (REQUEST_LOG)
      this.lines.push(
        `${(sentAt ?? 0) - this.startedAt} ${Math.round(latencyUs / 1000)} ${kind} ${sentAt ?? 0} ${outcome.trace || "-"} ${connection} ${outcome.flushedAt ?? 0}`,
      );
    bump(this.byCacheStatus, kind);
    if (settled) bump(this.settledByCacheStatus, kind);
    let histogram = this.byClass.get(kind);
    if (histogram === undefined) this.byClass.set(kind, (histogram = new LatencyHistogram()));
    histogram.record(latencyUs);
    if (outcome.status < 400) this.ok++;
    else if (isShed(outcome)) this.shed++;
    else {
      this.errors++;
      slot.errors++;
    }
  }
}

/** herdless's own 503 + Retry-After while it protects the origin (not a relayed origin 503). */
function isShed(outcome: Outcome): boolean {
  return (
    outcome.status === 503 &&
    outcome.retryAfter &&
    /detail=(breaker-open|queue-full|queue-timeout|waiting-full)/.test(outcome.cacheStatus)
  );
}

function bump(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

/**
 * "stale" (a stale copy served: SWR, stale-if-error), "hit", "collapsed" (joined another
 * request's fetch), "revalidated" (went forward with a stale copy), "fwd" (a miss), or
 * "none" (no Cache-Status: the origin itself).
 */
export function cacheStatusClass(header: string): string {
  if (header === "") return "none";
  // nginx's peer (nginx.ts) sends `nginx; $upstream_cache_status`: HIT, MISS, STALE, UPDATING, …
  const nginx = /^nginx;\s*([A-Z]+)/.exec(header)?.[1];
  if (nginx !== undefined) return NGINX_CLASSES[nginx] ?? "fwd";
  if (/detail=stale-(while-revalidate|if-error)/.test(header)) return "stale";
  if (/;\s*hit/.test(header)) return "hit";
  if (header.includes("collapsed")) return "collapsed";
  if (header.includes("fwd=stale")) return "revalidated";
  return "fwd";
}

const NGINX_CLASSES: Record<string, string> = {
  HIT: "hit",
  STALE: "stale",
  UPDATING: "stale",
  REVALIDATED: "revalidated",
};

function send(
  agent: Agent,
  base: URL,
  spec: Pick<LoadSpec, "host" | "headers" | "timeoutMs">,
  path: string,
): Promise<Outcome> {
  const { host, timeoutMs } = spec;
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, hostname: base.hostname, port: base.port, path, method: "GET", headers: { ...spec.headers, host } },
      (res) => {
        const outcome: Outcome = {
          status: res.statusCode ?? 0,
          retryAfter: res.headers["retry-after"] !== undefined,
          cacheStatus: String(res.headers["cache-status"] ?? ""),
          ...(REQUEST_LOG ? { trace: String(res.headers["x-bench-trace"] ?? ""), flushedAt } : {}),
        };
        res.on("data", () => {
          outcome.firstByteNs ??= process.hrtime.bigint();
        });
        res.once("end", () => resolve(outcome));
        res.once("error", reject);
      },
    );
    let flushedAt = 0;
    if (REQUEST_LOG) req.once("finish", () => (flushedAt = Date.now()));
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.once("error", reject);
    req.end();
  });
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  // One agent per connection: each loop owns exactly one keep-alive socket.
  const agents = Array.from({ length: spec.connections }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
  const bases = spec.targets.map((t) => new URL(t));
  const cpuBefore = process.cpuUsage();
  const startedAt = Date.now();
  const tally = new Tally(startedAt, spec.settleMs === undefined ? Infinity : startedAt + spec.settleMs);
  const deadline = spec.durationMs === undefined ? Infinity : startedAt + spec.durationMs;
  const limit = spec.requestsPerConnection ?? Infinity;
  let sequence = 0;
  const nextPath = (): string => {
    const n = sequence++;
    if (spec.uniquePrefix !== undefined)
      return `${spec.uniquePrefix}${spec.uniquePrefix.includes("?") ? "&" : "?"}u=${n}-${startedAt}`;
    return spec.paths[n % spec.paths.length] ?? "/";
  };

  const loop = async (index: number): Promise<void> => {
    const agent = agents[index];
    const base = bases[index % bases.length];
    if (agent === undefined || base === undefined) return;
    if (spec.raw === true) {
      let sent = 0;
      const more = () => sent++ < limit && Date.now() < deadline;
      return rawConnection(base, spec.host, nextPath, more, spec.timeoutMs, (outcome, started) =>
        tally.add(outcome, started),
      );
    }
    for (let sent = 0; sent < limit && Date.now() < deadline; sent++) {
      const started = process.hrtime.bigint();
      const sentAt = Date.now();
      try {
        tally.add(await send(agent, base, spec, nextPath()), started, sentAt, index);
      } catch (error) {
        tally.add(error instanceof Error ? error : new Error(String(error)), started, sentAt);
      }
    }
  };
  await Promise.all(agents.map((_, i) => loop(i)));
  if (REQUEST_LOG) writeFileSync(`${REQUEST_LOG}-${startedAt}`, `${tally.lines.join("\n")}\n`);
  const elapsedMs = Date.now() - startedAt;
  for (const agent of agents) agent.destroy();
  const cpu = process.cpuUsage(cpuBefore);

  const last = Math.max(-1, ...tally.perSecond.keys());
  const timeline: LoadResult["timeline"] = [];
  for (let s = 0; s <= last; s++)
    timeline.push({ atMs: s * 1000, ...(tally.perSecond.get(s) ?? { requests: 0, errors: 0 }) });
  const requests = tally.histogram.count;
  return {
    requests,
    ok: tally.ok,
    shed: tally.shed,
    errors: tally.errors,
    networkErrors: tally.networkErrors,
    networkErrorSamples: [...tally.networkErrorSamples],
    byStatus: tally.byStatus,
    byCacheStatus: tally.byCacheStatus,
    ...(spec.settleMs === undefined
      ? {}
      : {
          settled: {
            afterMs: spec.settleMs,
            requests: tally.settledRequests,
            byCacheStatus: tally.settledByCacheStatus,
          },
        }),
    latency: tally.histogram.summary(),
    latencyByCacheStatus: Object.fromEntries([...tally.byClass].map(([kind, h]) => [kind, h.summary()])),
    ...(tally.ttfb.count > 0 ? { ttfb: tally.ttfb.summary() } : {}),
    breakerOpen: tally.breakerOpen,
    startedAt,
    elapsedMs,
    throughputRps: elapsedMs > 0 ? Math.round((requests / elapsedMs) * 1000) : 0,
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    timeline,
  };
}

const spec = process.argv[2];
if (spec !== undefined && process.argv[1]?.endsWith("load-generator.ts")) {
  const result = await runLoad(JSON.parse(spec) as LoadSpec);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
