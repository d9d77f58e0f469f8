import type { GuardSnapshot } from "../guard/origin-guard.ts";
import { LATENCY_BUCKETS_SECONDS, type LatencyHistograms } from "./latency.ts";
import type { FillBudgetView } from "../store/fill-budget.ts";
import { zeroProtection, type CounterView, type ServeKind } from "./metrics.ts";

const BREAKER_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

/** What the metrics endpoint shows; the parts a runtime does not have are left out. */
export interface PrometheusInput {
  /** Whose counters, said in the help texts: a Node process's, a Worker deployment's, or one isolate's (no STATS binding). */
  scope: "process" | "deployment" | "isolate";
  counters: Pick<CounterView, "served" | "origin" | "protection">;
  guard: GuardSnapshot;
  /** Help text of `herdless_origin_in_flight`: whose requests the guard sees. */
  inFlightHelp: string;
  /** Node's in-memory tier. */
  cache?: { bytes: number; entries: number; evictions: number };
  /** Node's fill budget (store/fill-budget.ts) and what it holds. */
  filling?: FillBudgetView & { budgetBytes: number };
  /** Node's coordination modes and the current one. */
  mode?: { modes: readonly string[]; current: string };
  /** Node's latency histograms, by result. */
  latency?: LatencyHistograms<ServeKind>;
  /** Workers: isolates whose reports make up the counters. */
  reportingIsolates?: number;
}

/**
 * The Prometheus text exposition (format 0.0.4) of herdless's numbers, for both runtimes.
 *
 * @example
 * const body = prometheusText({ scope: "process", counters: metrics, guard: await guard.snapshot(), inFlightHelp });
 */
export function prometheusText(input: PrometheusInput): string {
  const { served, origin } = input.counters;
  const whose = { process: "by this process", deployment: "by the whole deployment", isolate: "by this isolate" }[
    input.scope
  ];
  const lines: string[] = [];
  const metric: Emit = (name, type, help, samples) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  metric(
    "herdless_requests_total",
    "counter",
    `Requests answered ${whose}, by how.`,
    Object.entries(served).map(([kind, n]) => [`{result="${kind}"}`, n]),
  );
  metric("herdless_hits_total", "counter", `Requests answered from a fresh entry ${whose}.`, [["", served.hit]]);
  metric(
    "herdless_stale_served_total",
    "counter",
    `Requests answered from a stale entry (while revalidating or on error) ${whose}.`,
    [["", served.stale + served["stale-if-error"]]],
  );
  metric("herdless_misses_total", "counter", "Requests that waited on the coordinator as the one going forward.", [
    ["", served.miss],
  ]);
  metric("herdless_coalesced_total", "counter", "Requests that waited on another request's origin fetch.", [
    ["", served.collapsed],
  ]);
  metric(
    "herdless_origin_requests_total",
    "counter",
    `Origin requests made ${whose}, by outcome.`,
    Object.entries(origin).map(([outcome, n]) => [`{outcome="${outcome}"}`, n]),
  );
  if (input.latency)
    metric(
      "herdless_request_duration_seconds",
      "histogram",
      "Time from a request's arrival until its answer's head is ready to send, by result (a streamed body's transfer is not included).",
      histogramSamples(input.latency),
    );
  metric("herdless_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open.", [
    ["", BREAKER_VALUE[input.guard.breaker]],
  ]);
  const protection = { ...zeroProtection(), ...input.counters.protection };
  metric(
    "herdless_backoff_answers_total",
    "counter",
    `Requests answered (stored copy or 503) while their key backed off after sick origin calls, ${whose}.`,
    [["", protection["backoff-answered"]]],
  );
  metric(
    "herdless_backoff_started_total",
    "counter",
    `Times a key began backing off after a sick origin call, seen ${whose}.`,
    [["", protection["backoff-started"]]],
  );
  metric("herdless_origin_in_flight", "gauge", input.inFlightHelp, [["", input.guard.inFlight]]);
  metric("herdless_queue_depth", "gauge", "Cold misses waiting for an origin slot.", [["", input.guard.queued]]);
  nodeGauges(metric, input);
  if (input.reportingIsolates !== undefined)
    metric(
      "herdless_reporting_isolates",
      "gauge",
      "Worker isolates whose reports make up the counters (those heard from in the last ten minutes).",
      [["", input.reportingIsolates]],
    );
  return `${lines.join("\n")}\n`;
}

/** Writes one metric family: its HELP and TYPE lines, then one line per sample. */
type Emit = (
  name: string,
  type: "counter" | "gauge" | "histogram",
  help: string,
  samples: [suffixAndLabels: string, value: number][],
) => void;

/** Cumulative buckets, then sum and count, per result (the histogram type of format 0.0.4). */
function histogramSamples(latency: LatencyHistograms<ServeKind>): [string, number][] {
  const samples: [string, number][] = [];
  for (const [kind, histogram] of latency.entries()) {
    let cumulative = 0;
    LATENCY_BUCKETS_SECONDS.forEach((le, i) => {
      cumulative += histogram.buckets[i] ?? 0;
      samples.push([`_bucket{result="${kind}",le="${le}"}`, cumulative]);
    });
    samples.push([`_bucket{result="${kind}",le="+Inf"}`, histogram.count]);
    samples.push([`_sum{result="${kind}"}`, histogram.sum]);
    samples.push([`_count{result="${kind}"}`, histogram.count]);
  }
  return samples;
}

/** What only a Node process has: its in-memory tier and its coordination mode. */
function nodeGauges(metric: Emit, input: PrometheusInput): void {
  if (input.cache) {
    metric("herdless_cache_bytes", "gauge", "Bytes held by the in-memory tier.", [["", input.cache.bytes]]);
    metric("herdless_cache_entries", "gauge", "Entries held by the in-memory tier.", [["", input.cache.entries]]);
    metric("herdless_cache_evictions_total", "counter", "Entries evicted to stay within cache.maxBytes.", [
      ["", input.cache.evictions],
    ]);
  }
  if (input.filling) fillGauges(metric, input.filling);
  if (input.mode) {
    const current = input.mode.current;
    metric(
      "herdless_coordination_mode",
      "gauge",
      "1 for the current coordination mode, 0 for the others.",
      input.mode.modes.map((m) => [`{mode="${m}"}`, m === current ? 1 : 0]),
    );
  }
}

/** The bodies held whole while they arrive, to be stored: `cache.fillBudgetBytes` bounds them. */
function fillGauges(metric: Emit, filling: FillBudgetView & { budgetBytes: number }): void {
  const held = "Bytes of bodies held whole while they arrive, to be stored";
  metric("herdless_fill_bytes", "gauge", `${held}.`, [["", filling.bytes]]);
  metric("herdless_fill_peak_bytes", "gauge", `${held}: the most at once since the start.`, [["", filling.peakBytes]]);
  metric("herdless_fill_budget_bytes", "gauge", "cache.fillBudgetBytes: what they may hold together.", [
    ["", filling.budgetBytes],
  ]);
  metric(
    "herdless_fill_over_budget_total",
    "counter",
    "Bodies streamed to their clients and not stored because the fill budget was full.",
    [["", filling.refused]],
  );
}
