/**
 * Where the slowest requests of a load waited, from the load generator's request log
 * (`BENCH_REQUEST_LOG=/tmp/x`, load-generator.ts) of a Worker run: each request's time split
 * into before its handler ran (from its bytes reaching the kernel to the handler's start,
 * `t0` of `x-bench-trace`), in the handler, and after it (the answer's way back to the
 * client's read). workerd's clock and the client's are the same machine's wall clock, in 1 ms
 * steps.
 *
 *   node --import tsx bench/request-log.ts /tmp/x-1796104777183 [/tmp/x-… …]
 *
 * One line per file: p99.9 and max latency, the slowest 0.1 % by the part that was longest,
 * and the longest wait before a handler ran (a request whose socket workerd had not polled).
 */
import { readFileSync } from "node:fs";

interface Logged {
  latencyMs: number;
  beforeMs: number;
  inMs: number;
  afterMs: number;
  dc: string;
}

function parse(line: string): Logged | undefined {
  const [, latency, , sentAt, trace, , flushedAt] = line.split(" ");
  if (trace === undefined || trace === "-" || flushedAt === undefined) return undefined;
  const fields = new Map(trace.split(";").map((part) => part.split("=") as [string, string]));
  const t0 = Number(fields.get("t0"));
  const t1 = Number(fields.get("t1"));
  const sent = Number(sentAt);
  const flushed = Number(flushedAt) || sent;
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) return undefined;
  const latencyMs = Number(latency);
  return {
    latencyMs,
    beforeMs: t0 - flushed,
    inMs: t1 - t0,
    afterMs: sent + latencyMs - t1,
    dc: fields.get("dc") ?? "?",
  };
}

for (const file of process.argv.slice(2)) {
  const rows = readFileSync(file, "utf8")
    .split("\n")
    .map(parse)
    .filter((row): row is Logged => row !== undefined)
    .sort((a, b) => b.latencyMs - a.latencyMs);
  if (rows.length === 0) {
    console.log(`${file}: no traced requests`);
    continue;
  }
  const slowest = rows.slice(0, Math.max(1, Math.floor(rows.length / 1000)));
  const parts = { before: 0, in: 0, after: 0 };
  for (const row of slowest) {
    const longest = Math.max(row.beforeMs, row.inMs, row.afterMs);
    parts[longest === row.beforeMs ? "before" : longest === row.inMs ? "in" : "after"]++;
  }
  const maxBefore = rows.reduce((max, row) => Math.max(max, row.beforeMs), -Infinity);
  console.log(
    `${file} (${rows[0]?.dc.replace(/\d+$/, "")}): ${rows.length} requests, p99.9 ${slowest.at(-1)?.latencyMs} ms, max ${rows[0]?.latencyMs} ms; the slowest 0.1 % waited longest before the handler ${parts.before}, in it ${parts.in}, after it ${parts.after}; longest wait before a handler ${maxBefore} ms`,
  );
}
