/** Targets of the origin-protection scenarios (issue 12), each read against its baseline in the same run. */
import { fmt } from "./format.ts";
import { HERDLESS_RUNTIMES, originCounted } from "./scenarios.ts";
import type { Target } from "./types.ts";
import type { BenchRun, CellResult, LoadResult, RuntimeName, ScenarioName } from "./types.ts";

/**
 * A page nobody may share reaches the origin on every request, so a cache can only add to
 * its time: its own relay (a few ms) is allowed, waiting on another visitor's request (one
 * more origin round trip, 2 ×) is not.
 */
const DYNAMIC_P50_RATIO = 1.5;

function cellOf(run: BenchRun, scenario: ScenarioName, runtime: RuntimeName): CellResult | undefined {
  return run.cells.find((c) => c.scenario === scenario && c.runtime === runtime);
}

/** The cell's numbers, or why there are none. */
function measured(cell: CellResult | undefined): { load: LoadResult; origin: number } | string {
  if (cell === undefined) return "not run";
  if (cell.skipped !== undefined) return `not run: ${cell.skipped.split("\n")[0]}`;
  if (cell.load === undefined || cell.origin === undefined) return "no result";
  return { load: cell.load, origin: cell.origin.requests };
}

/** Responses that waited on the origin: joined a fetch, went forward with a stale copy, or missed. */
export function waitedOnOrigin(load: Pick<LoadResult, "byCacheStatus">): number {
  const c = load.byCacheStatus;
  return (c.collapsed ?? 0) + (c.revalidated ?? 0) + (c.fwd ?? 0);
}

/** "o origin requests after warm-up ÷ ideal = r (t in all)", or the whole run's when the ideal counts it. */
export function originText(cell: CellResult): string {
  const counted = originCounted(cell);
  const ideal = cell.ideal?.requests;
  if (counted === undefined || ideal === undefined) return `origin ${cell.origin?.requests ?? "–"}`;
  const ratio = `${counted} ÷ ${fmt(ideal, Number.isInteger(ideal) ? 0 : 1)} ideal = ${fmt(counted / ideal, 2)}`;
  return cell.ideal?.counts === "settled"
    ? `origin ${ratio} after warm-up (${cell.origin?.requests ?? "–"} in all)`
    : `origin ${ratio}`;
}

/** "w of n waited (p %)", for the whole run and, when the load had `settleMs`, after it. */
export function waitedText(load: LoadResult): string {
  const share = (waited: number, of: number) => `${waited} of ${of} waited (${fmt((100 * waited) / of, 2)} %)`;
  const all = share(waitedOnOrigin(load), load.requests);
  const s = load.settled;
  return s ? `${share(waitedOnOrigin(s), s.requests)} after warm-up (first ${s.afterMs} ms), ${all} in all` : all;
}

/** Responses that waited on the origin after warm-up (the load's `settleMs`), else in the whole run. */
function waitedAfterWarmUp(load: LoadResult): number {
  return waitedOnOrigin(load.settled ?? load);
}

function eachRuntime(
  run: BenchRun,
  scenario: ScenarioName,
  name: (runtime: RuntimeName) => string,
  judge: (m: { load: LoadResult; origin: number }, cell: CellResult) => { pass: boolean; detail: string },
): Target[] {
  if (!run.cells.some((c) => c.scenario === scenario)) return [];
  return HERDLESS_RUNTIMES.flatMap((runtime) => {
    const cell = cellOf(run, scenario, runtime);
    if (cell === undefined) return [];
    const m = measured(cell);
    if (typeof m === "string") return [{ name: name(runtime), verdict: "MISS" as const, detail: m }];
    const { pass, detail } = judge(m, cell);
    return [{ name: name(runtime), verdict: pass ? ("PASS" as const) : ("MISS" as const), detail }];
  });
}

function baselineText(
  run: BenchRun,
  scenario: ScenarioName,
  runtime: RuntimeName,
  text: (m: { load: LoadResult; origin: number }) => string,
): string {
  const m = measured(cellOf(run, scenario, runtime));
  return typeof m === "string" ? `${scenario} × ${runtime}: ${m}` : `${scenario} × ${runtime}: ${text(m)}`;
}

export function protectionTargets(run: BenchRun): Target[] {
  const direct = (scenario: ScenarioName, text: (m: { load: LoadResult; origin: number }) => string) =>
    `baseline ${baselineText(run, scenario, "direct", text)}`;
  return [
    ...eachRuntime(
      run,
      "broken-url",
      (r) => `broken-url: 0 requests refused while one URL answers 500 (${r})`,
      ({ load, origin }) => ({
        pass: (load.breakerOpen ?? 0) === 0 && load.shed === 0,
        detail: `${load.breakerOpen ?? "?"} answers with detail=breaker-open, ${load.shed} shed, ${load.byStatus["500"] ?? 0} × 500 relayed, origin ${origin}; ${direct("broken-url", (d) => `${d.load.errors} errors (${d.load.byStatus["500"] ?? 0} × 500, ${d.load.byStatus["503"] ?? 0} × 503), origin ${d.origin}`)}`,
      }),
    ),
    ...eachRuntime(
      run,
      "dynamic-page",
      (r) => `dynamic-page: p50 ≤ ${DYNAMIC_P50_RATIO} × direct's, 0 errors (${r})`,
      ({ load, origin }) => {
        const base = measured(cellOf(run, "dynamic-page", "direct"));
        const p50 = typeof base === "string" ? undefined : base.load.latency.p50Ms;
        return {
          pass: p50 !== undefined && load.errors === 0 && load.latency.p50Ms <= DYNAMIC_P50_RATIO * p50,
          detail: `p50 ${load.latency.p50Ms} ms (${p50 === undefined ? "–" : fmt(load.latency.p50Ms / p50, 2)} × direct's), p99 ${load.latency.p99Ms} ms, ${load.errors} errors, origin ${origin}; ${direct("dynamic-page", (d) => `p50 ${d.load.latency.p50Ms} ms, p99 ${d.load.latency.p99Ms} ms, origin ${d.origin}`)}`,
        };
      },
    ),
    ...eachRuntime(
      run,
      "session-assets",
      (r) => `session-assets: 0 origin requests, 0 errors (${r})`,
      ({ load, origin }) => ({
        pass: origin === 0 && load.errors === 0,
        detail: `${origin} origin requests for ${load.requests} requests with a session cookie, ${load.errors} errors, p50 ${load.latency.p50Ms} ms, p99 ${load.latency.p99Ms} ms; ${direct("session-assets", (d) => `origin ${d.origin} for ${d.load.requests} requests`)}`,
      }),
    ),
    ...eachRuntime(
      run,
      "large-body-herd",
      (r) => `large-body-herd: origin ÷ ideal ≤ 1.00, 0 errors, first byte vs direct (${r})`,
      ({ load, origin }, cell) => {
        const ideal = cell.ideal?.requests ?? 1;
        const ttfb = load.ttfb?.p50Ms;
        return {
          pass: origin <= ideal && load.errors === 0,
          detail: `${origin} origin requests ÷ ${ideal} ideal = ${fmt(origin / ideal, 2)}; ${load.errors} errors; first byte p50 ${ttfb ?? "–"} ms, p99 ${load.ttfb?.p99Ms ?? "–"} ms, whole body p50 ${load.latency.p50Ms} ms; ${direct("large-body-herd", (d) => `first byte p50 ${d.load.ttfb?.p50Ms ?? "–"} ms (${d.load.ok} complete bodies), ${d.load.errors} errors, origin ${d.origin}`)}`,
        };
      },
    ),
    ...eachRuntime(
      run,
      "hot-keys",
      (r) => `hot-keys: 0 responses waited on the origin, origin ≤ 1.10 × ideal (${r})`,
      ({ load }, cell) => {
        const ideal = cell.ideal?.requests ?? 1;
        const waited = waitedAfterWarmUp(load);
        const baseline = cellOf(run, "hot-keys-baseline", cell.runtime);
        const base = baselineText(
          run,
          "hot-keys-baseline",
          cell.runtime,
          (b) => `${waitedText(b.load)}, ${baseline ? originText(baseline) : `origin ${b.origin}`}`,
        );
        const counted = originCounted(cell);
        return {
          pass: waited === 0 && counted !== undefined && counted <= 1.1 * ideal,
          detail: `${waitedText(load)}; ${originText(cell)}; baseline ${base}`,
        };
      },
    ),
  ];
}
