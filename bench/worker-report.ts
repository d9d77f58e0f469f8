/**
 * The Worker's own report: the spike tail against a bare Worker, what a miss adds and how
 * many hops it makes, and what each scenario costs on Cloudflare, from the operations the
 * Worker's meter counted (bench/worker-meter.js) at Cloudflare's published rates.
 */
import type { Target } from "./types.ts";
import type { BenchRun, CellResult, MeterReading, ScenarioName } from "./types.ts";

/**
 * Cloudflare's published rates (Workers Paid), as read on 2026-11-30 from
 * developers.cloudflare.com/durable-objects/platform/pricing (cloudflare-docs
 * `partials/durable-objects/durable-objects-pricing.mdx`) and the Workers Standard rates
 * restated on developers.cloudflare.com/workflows/reference/pricing. Monthly allowances
 * (10 M Workers requests, 1 M DO requests, 400,000 GB-s, 25 billion rows read, 50 million
 * rows written) are left out: these are marginal prices. The Cache API has no
 * per-operation price; its operations are counted because they cost latency.
 */
export const RATES = {
  asOf: "2026-11-30",
  workersRequestPerMillion: 0.3,
  doRequestPerMillion: 0.15,
  doGbSecondPerMillion: 12.5,
  /** duration is billed for the 128 MB an object is allocated */
  doGb: 0.125,
  rowsReadPerMillion: 0.001,
  rowsWrittenPerMillion: 1.0,
} as const;

export const TAIL_SCENARIOS: ScenarioName[] = ["tail-cold", "tail-expiring", "tail-expiring-swr", "tail-hits"];
const TAIL_FACTOR = 1.5;
const MISS_ADDED_MS = 5;

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : "–");
const cellOf = (run: BenchRun, scenario: ScenarioName, runtime: string): CellResult | undefined =>
  run.cells.find((c) => c.scenario === scenario && c.runtime === runtime && c.skipped === undefined);

function total(meter: MeterReading, match: (op: string) => boolean, phase?: "fg" | "bg"): number {
  let sum = 0;
  for (const [op, n] of Object.entries(meter.counts))
    if (match(op)) sum += phase === undefined ? n.fg + n.bg : n[phase];
  return sum;
}

const isDoRequest = (op: string) => op.startsWith("do request ");
const isCacheOp = (op: string) => op.startsWith("cache api ");
const isRowRead = (op: string) => op === "storage rows read" || op === "storage kv read";
const isRowWritten = (op: string) =>
  op === "storage rows written" || op === "storage kv write" || op === "storage alarm write";
/** Operations that leave the isolate and are awaited: each is a round trip when made on a request's path. */
const isHop = (op: string) =>
  isDoRequest(op) || isCacheOp(op) || op === "fetch (origin)" || op.startsWith("storage alarm");

export interface Cost {
  doRequests: number;
  rowsRead: number;
  rowsWritten: number;
  cacheOps: number;
  originFetches: number;
  doActiveMs: number;
  /** USD per million client requests */
  usdPerMillion: number;
}

/** Per 1,000 client requests, and the price per million client requests. */
export function costPerThousand(meter: MeterReading): Cost {
  const per = (n: number) => (meter.clientRequests === 0 ? 0 : (n * 1000) / meter.clientRequests);
  const activeMs = Object.values(meter.activeMs).reduce((a, b) => a + b, 0);
  const cost: Cost = {
    doRequests: per(total(meter, isDoRequest)),
    rowsRead: per(total(meter, isRowRead)),
    rowsWritten: per(total(meter, isRowWritten)),
    cacheOps: per(total(meter, isCacheOp)),
    originFetches: per(total(meter, (op) => op === "fetch (origin)")),
    doActiveMs: per(activeMs),
    usdPerMillion: 0,
  };
  // Per million client requests = per thousand × 1,000; each rate is per million units.
  const k = 1000 / 1e6;
  cost.usdPerMillion =
    1e6 * (RATES.workersRequestPerMillion / 1e6) +
    cost.doRequests * k * RATES.doRequestPerMillion +
    ((cost.doActiveMs * 1000) / 1000) * RATES.doGb * (RATES.doGbSecondPerMillion / 1e6) +
    cost.rowsRead * k * RATES.rowsReadPerMillion +
    cost.rowsWritten * k * RATES.rowsWrittenPerMillion;
  return cost;
}

/** Hops on a miss's path: operations started while the request was in progress, per request. */
export function hopsPerRequest(meter: MeterReading): { total: number; detail: string } {
  const per = (n: number) => (meter.clientRequests === 0 ? 0 : n / meter.clientRequests);
  const parts = Object.entries(meter.counts)
    .filter(([op, n]) => isHop(op) && n.fg > 0)
    .map(([op, n]) => `${op} ${fmt(per(n.fg), 2)}`);
  return { total: per(total(meter, isHop, "fg")), detail: parts.join(", ") };
}

export function workerTargets(run: BenchRun): Target[] {
  const out: Target[] = [];
  for (const scenario of TAIL_SCENARIOS) {
    const cell = cellOf(run, scenario, "worker")?.load;
    const bare = cellOf(run, scenario, "bare-worker")?.load;
    if (!cell && !bare) continue;
    const name = `${scenario}: worker p99 and p99.9 ≤ ${TAIL_FACTOR}× bare-worker's`;
    if (!cell || !bare) {
      out.push({ name, verdict: "MISS", detail: "worker or bare-worker did not run" });
      continue;
    }
    const r99 = cell.latency.p99Ms / bare.latency.p99Ms;
    const r999 = cell.latency.p999Ms / bare.latency.p999Ms;
    const clean = cell.errors === 0;
    out.push({
      name,
      verdict: r99 <= TAIL_FACTOR && r999 <= TAIL_FACTOR && clean ? "PASS" : "MISS",
      detail: `p99 ${cell.latency.p99Ms} ÷ ${bare.latency.p99Ms} ms = ${fmt(r99, 2)}×, p99.9 ${cell.latency.p999Ms} ÷ ${bare.latency.p999Ms} ms = ${fmt(r999, 2)}×${clean ? "" : `, ${cell.errors} errors`}`,
    });
  }
  const direct = cellOf(run, "cold-misses", "direct")?.load;
  for (const runtime of ["node", "worker"]) {
    const cell = cellOf(run, "cold-misses", runtime);
    if (!cell?.load || !direct) continue;
    const added = cell.load.latency.p50Ms - direct.latency.p50Ms;
    const hops = cell.meter ? `; ${fmt(hopsPerRequest(cell.meter).total, 1)} sequential hops per miss` : "";
    out.push({
      name: `cold-misses: ${runtime} adds ≤ ${MISS_ADDED_MS} ms to a miss (p50 against direct)`,
      verdict: added <= MISS_ADDED_MS && cell.load.errors === 0 ? "PASS" : "MISS",
      detail: `p50 ${cell.load.latency.p50Ms} − ${direct.latency.p50Ms} ms = ${fmt(added, 1)} ms${hops}`,
    });
  }
  return out;
}

/** The cost table and the hops of a miss, for latest.md. */
export function workerCostSection(run: BenchRun): string[] {
  const metered = run.cells.filter((c) => c.runtime === "worker" && c.meter !== undefined);
  if (metered.length === 0) return [];
  const lines = [
    "## The Worker on Cloudflare: operations and price",
    "",
    `Counted inside workerd by the bench's meter (bench/worker-meter.js) over each measured run, per 1,000 client requests. Price per million client requests at Cloudflare's published Workers Paid rates as read on ${RATES.asOf}: Workers requests $${RATES.workersRequestPerMillion}/M, Durable Object requests $${RATES.doRequestPerMillion}/M (RPC calls and alarms), DO duration $${RATES.doGbSecondPerMillion}/M GB-s at ${RATES.doGb} GB (here: wall time with a call running, a lower bound), SQLite rows read $${RATES.rowsReadPerMillion}/M, rows written $${RATES.rowsWrittenPerMillion}/M (KV writes and setAlarm count as rows written). Monthly allowances left out; Workers CPU time not priced (local CPU is not Cloudflare's); the Cache API has no per-operation price.`,
    "",
    "| scenario | client requests | DO requests | rows read | rows written | Cache API ops | origin fetches | DO active ms | $ per million client requests |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const cell of metered) {
    const meter = cell.meter as MeterReading;
    const c = costPerThousand(meter);
    lines.push(
      `| ${cell.scenario} | ${meter.clientRequests} | ${fmt(c.doRequests, 1)} | ${fmt(c.rowsRead, 1)} | ${fmt(c.rowsWritten, 1)} | ${fmt(c.cacheOps, 1)} | ${fmt(c.originFetches, 2)} | ${fmt(c.doActiveMs, 0)} | ${fmt(c.usdPerMillion, 2)} |`,
    );
  }
  lines.push("");
  const misses = metered.find((c) => c.scenario === "cold-misses");
  if (misses?.meter) {
    const hops = hopsPerRequest(misses.meter);
    lines.push(
      `Hops per cold miss (operations leaving the isolate, started while the request was in progress, per request): ${fmt(hops.total, 1)} — ${hops.detail}.`,
      "",
    );
  }
  lines.push(
    "Every operation: count while a client request was in progress in that isolate / count otherwise, and the mean wall ms until it settled; then the handler's mean time per request:",
    "",
  );
  for (const cell of metered) {
    const meter = cell.meter as MeterReading;
    const ops = Object.entries(meter.counts)
      .map(([op, n]) => `${op} ${n.fg}/${n.bg}${n.ms > 0 ? ` (${fmt(n.ms / (n.fg + n.bg), 1)} ms)` : ""}`)
      .join(", ");
    const handler = meter.clientRequests > 0 ? fmt(meter.handlerMs / meter.clientRequests, 1) : "–";
    lines.push(`- ${cell.scenario}: ${ops}; handler ${handler} ms per request.`);
  }
  lines.push("");
  return lines;
}
