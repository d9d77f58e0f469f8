import type { GuardSnapshot } from "../core/guard/origin-guard.ts";
import type { Stack } from "./stack.ts";

const MODES = ["local", "redis", "degraded"] as const;
const BREAKER_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

/** The Prometheus text exposition of one process's counters. */
export function prometheusText(stack: Stack, guard: GuardSnapshot): string {
  const m = stack.metrics;
  const lines: string[] = [];
  const metric = (
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: [labels: string, value: number][],
  ) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  metric(
    "herdless_requests_total",
    "counter",
    "Requests answered, by how.",
    Object.entries(m.served).map(([kind, n]) => [`{result="${kind}"}`, n]),
  );
  metric("herdless_hits_total", "counter", "Requests answered from a fresh entry.", [["", m.served.hit]]);
  metric(
    "herdless_stale_served_total",
    "counter",
    "Requests answered from a stale entry (while revalidating or on error).",
    [["", m.served.stale + m.served["stale-if-error"]]],
  );
  metric("herdless_misses_total", "counter", "Requests that waited on the coordinator as the one going forward.", [
    ["", m.served.miss],
  ]);
  metric("herdless_coalesced_total", "counter", "Requests that waited on another request's origin fetch.", [
    ["", m.served.collapsed],
  ]);
  metric(
    "herdless_origin_requests_total",
    "counter",
    "Origin requests, by outcome.",
    Object.entries(m.origin).map(([outcome, n]) => [`{outcome="${outcome}"}`, n]),
  );
  metric("herdless_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open.", [
    ["", BREAKER_VALUE[guard.breaker]],
  ]);
  metric(
    "herdless_origin_in_flight",
    "gauge",
    "Origin requests in flight: this process alone, or the whole fleet when it shares Redis.",
    [["", guard.inFlight]],
  );
  metric("herdless_queue_depth", "gauge", "Cold misses waiting for an origin slot.", [["", guard.queued]]);
  metric("herdless_cache_bytes", "gauge", "Bytes held by the in-memory tier.", [["", stack.near.bytes]]);
  metric("herdless_cache_entries", "gauge", "Entries held by the in-memory tier.", [["", stack.near.size]]);
  metric("herdless_cache_evictions_total", "counter", "Entries evicted to stay within cache.maxBytes.", [
    ["", stack.near.evictions],
  ]);
  const mode = stack.mode();
  metric(
    "herdless_coordination_mode",
    "gauge",
    "1 for the current coordination mode, 0 for the others.",
    MODES.map((m) => [`{mode="${m}"}`, m === mode ? 1 : 0]),
  );
  return `${lines.join("\n")}\n`;
}
