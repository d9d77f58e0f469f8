/**
 * The Worker's own report: the spike tail against a bare Worker, what a miss adds and how
 * many hops it makes, and what each scenario costs on Cloudflare, from the operations the
 * Worker's meter counted (bench/worker-meter.js) at Cloudflare's published rates.
 */
import { fmt } from "./format.ts";
import type { Target } from "./types.ts";
import type { MissTrace } from "./miss-trace.ts";
import { againstBase, pairText, roundsOf } from "./rounds.ts";
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

/**
 * The same load's first wave on the freshly started runtimes (scenario.coldProcessRun), not
 * judged: the cost of isolates that start under the spike (the `startup` scenario measures
 * a start alone), shown beside the cold key's ratios so neither hides the other.
 */
function coldProcessRatios(run: BenchRun, scenario: ScenarioName): string {
  const waves = (runtime: string) =>
    run.cells
      .filter((c) => c.scenario === scenario && c.runtime === runtime && c.coldProcess)
      .map((c) => c.coldProcess!.latency);
  const { pairs, r99, r999 } = againstBase(waves("worker"), waves("bare-worker"));
  if (pairs.length === 0) return "";
  const each = pairs.map(({ cell, base }) => `${cell.p99Ms} ÷ ${base.p99Ms} and ${cell.p999Ms} ÷ ${base.p999Ms} ms`);
  return `; first wave on freshly started runtimes (not judged): p99 ${fmt(r99, 2)}×, p99.9 ${fmt(r999, 2)}×${pairs.length > 1 ? " (median)" : ""} (${each.join("; ")})`;
}

export function workerTargets(run: BenchRun): Target[] {
  const out: Target[] = [];
  for (const scenario of TAIL_SCENARIOS) {
    const cells = roundsOf(run, scenario, "worker");
    const bares = roundsOf(run, scenario, "bare-worker");
    if (cells.length === 0 && bares.length === 0) continue;
    const name = `${scenario}: worker p99 and p99.9 ≤ ${TAIL_FACTOR}× bare-worker's`;
    const { pairs, r99, r999 } = againstBase(
      cells.map((cell) => cell.latency),
      bares.map((bare) => bare.latency),
    );
    if (pairs.length === 0) {
      out.push({ name, verdict: "MISS", detail: "worker or bare-worker did not run" });
      continue;
    }
    const errors = cells.reduce((sum, cell) => sum + cell.errors, 0);
    const each = pairs.map(pairText);
    const detail =
      pairs.length === 1
        ? each[0]!
        : `median of ${pairs.length} alternated rounds: p99 ${fmt(r99, 2)}×, p99.9 ${fmt(r999, 2)}× (${each.map((text, i) => `round ${i + 1}: ${text}`).join("; ")})`;
    out.push({
      name,
      verdict: r99 <= TAIL_FACTOR && r999 <= TAIL_FACTOR && errors === 0 ? "PASS" : "MISS",
      detail: `${detail}${errors === 0 ? "" : `, ${errors} errors`}${coldProcessRatios(run, scenario)}`,
    });
  }
  const direct = cellOf(run, "cold-misses", "direct")?.load;
  for (const runtime of ["node", "fleet", "worker"]) {
    const cell = cellOf(run, "cold-misses", runtime);
    if (!cell?.load || !direct) continue;
    const added = cell.load.latency.p50Ms - direct.latency.p50Ms;
    const added99 = cell.load.latency.p99Ms - direct.latency.p99Ms;
    const hops = cell.trace
      ? `; ${fmt(cell.trace.hops.median)} sequential hops per miss (median; mean ${fmt(cell.trace.hops.mean, 1)})`
      : "";
    out.push({
      name: `cold-misses: ${runtime} adds ≤ ${MISS_ADDED_MS} ms to a miss (p50 against direct)`,
      verdict: added <= MISS_ADDED_MS && cell.load.errors === 0 ? "PASS" : "MISS",
      detail: `p50 ${cell.load.latency.p50Ms} − ${direct.latency.p50Ms} ms = ${fmt(added, 1)} ms added; p99 ${cell.load.latency.p99Ms} − ${direct.latency.p99Ms} ms = ${fmt(added99, 1)} ms${hops}`,
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
      `| ${cell.scenario}${cell.round === undefined ? "" : ` (round ${cell.round + 1})`} | ${meter.clientRequests} | ${fmt(c.doRequests, 1)} | ${fmt(c.rowsRead, 1)} | ${fmt(c.rowsWritten, 1)} | ${fmt(c.cacheOps, 1)} | ${fmt(c.originFetches, 2)} | ${fmt(c.doActiveMs, 0)} | ${fmt(c.usdPerMillion, 2)} |`,
    );
  }
  lines.push("");
  const misses = metered.find((c) => c.scenario === "cold-misses");
  if (misses?.meter) {
    const hops = hopsPerRequest(misses.meter);
    lines.push(
      `Operations leaving the isolate per cold miss, started while the request was in progress (on its path or behind it): ${fmt(hops.total, 1)} — ${hops.detail}.`,
      "",
    );
  }
  if (misses?.trace) lines.push(...traceSection(misses.trace));
  if (misses?.meter?.rowsBySql) lines.push(...rowsSection(misses.meter));
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
    const round = cell.round === undefined ? "" : ` (round ${cell.round + 1})`;
    lines.push(`- ${cell.scenario}${round}: ${ops}; handler ${handler} ms per request.`);
  }
  lines.push("");
  return lines;
}

/** Where a cold miss's time goes: the steps of bench/miss-trace.ts, as a table. */
function traceSection(trace: MissTrace): string[] {
  const lines = [
    "### Where a cold miss's time goes (Worker)",
    "",
    `From the meter's timeline inside workerd (1 ms clock), ${trace.requests} misses: ${fmt(trace.hops.median)} sequential hops per miss (median; mean ${fmt(trace.hops.mean, 1)}): steps the answer waited for, steps that ran alongside an earlier one counted once. Handler ${fmt(trace.handlerMs, 1)} ms (median), of which ${fmt(trace.handlerOwnMs, 1)} ms outside every step (the edge's own work). A step is on the path when its caller waited for it; "behind" steps ran after their caller answered. For object calls: "in" until the object's method ran, "out" from its end until the caller had the result (RPC and output gate), "own" the object's time outside the steps it waited for.`,
    "",
    "| step | per miss | on the path | starts at ms | ms (median) | ms (mean) | in | out | own |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const step of trace.steps) {
    const call =
      step.inMs === undefined
        ? "| | |"
        : `| ${fmt(step.inMs, 1)} | ${fmt(step.outMs ?? NaN, 1)} | ${fmt(step.ownMs ?? NaN, 1)}`;
    lines.push(
      `| ${step.path} | ${fmt(step.perRequest, 2)} | ${fmt(step.onPathPerRequest, 2)} | ${fmt(step.startMs, 1)} | ${fmt(step.ms, 1)} | ${fmt(step.meanMs, 1)} ${call} |`,
    );
  }
  lines.push("");
  return lines;
}

/** Storage rows per cold miss by SQL statement (the meter's cursor counters). */
function rowsSection(meter: MeterReading): string[] {
  const per = (n: number) => (meter.clientRequests === 0 ? 0 : n / meter.clientRequests);
  const rows = Object.entries(meter.rowsBySql ?? {})
    .filter(([, n]) => n.written > 0 || n.read > 0)
    .sort((a, b) => b[1].written - a[1].written || b[1].read - a[1].read);
  if (rows.length === 0) return [];
  const lines = [
    `Storage rows per cold miss by statement (${fmt(per(rows.reduce((sum, [, n]) => sum + n.written, 0)), 1)} written, ${fmt(per(rows.reduce((sum, [, n]) => sum + n.read, 0)), 1)} read):`,
    "",
    "| statement | calls | rows written | rows read |",
    "|---|---|---|---|",
  ];
  for (const [sql, n] of rows)
    lines.push(
      `| \`${sql.replace(/\|/g, "\\|")}\` | ${fmt(per(n.calls), 2)} | ${fmt(per(n.written), 2)} | ${fmt(per(n.read), 2)} |`,
    );
  lines.push("");
  return lines;
}
