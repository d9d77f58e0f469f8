/** The fragile origin as the bench runs it: a child process driven over its control API. */
import { startTsServer, type Server } from "./processes.ts";
import type { ArrivalWindow, FragileOriginStats } from "../fixtures/fragile-origin.ts";
import type { OriginSummary } from "./types.ts";

/** The bench's origin: slow, crashes past 8 in flight, ETags on. */
export const ORIGIN_LATENCY_MS = 50;
export const ORIGIN_CRASH_ABOVE = 8;

export interface BenchOrigin {
  url: string;
  server: Server;
  /** GET /__origin/stats: the fixture's own counters; with `window`, also the requests that arrived in it */
  stats(window?: ArrivalWindow): Promise<FragileOriginStats>;
  reset(): Promise<void>;
  set(patch: Record<string, unknown>): Promise<void>;
}

export async function startOrigin(cacheControl: string, latencyMs = ORIGIN_LATENCY_MS): Promise<BenchOrigin> {
  const server = await startTsServer(
    "fragile origin",
    "fixtures/fragile-origin.ts",
    [
      "--port",
      "0",
      "--latency-ms",
      String(latencyMs),
      "--crash-above",
      String(ORIGIN_CRASH_ABOVE),
      "--cache-control",
      cacheControl,
      "--body-bytes",
      "512",
    ],
    /fragile origin listening on (http:\/\/\S+)/,
  );
  const url = server.ready;
  const control = async (method: "GET" | "POST", action: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${url}/__origin/${action}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    });
    if (!res.ok) throw new Error(`origin ${action}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  return {
    url,
    server,
    stats: async (window) =>
      (await control("GET", window ? `stats?from=${window.fromMs}&to=${window.toMs}` : "stats")) as FragileOriginStats,
    reset: async () => void (await control("POST", "reset")),
    set: async (patch) => void (await control("POST", "set", patch)),
  };
}

/** Origin stats as the report shows them; `settleMs`: the load's, when the stats were read for the window after it. */
export function summarizeOrigin(stats: FragileOriginStats, settleMs?: number): OriginSummary {
  const ok200 = stats.byStatus["200"] ?? 0;
  const notModified304 = stats.byStatus["304"] ?? 0;
  return {
    requests: stats.requests,
    ok200,
    notModified304,
    failed: stats.requests - ok200 - notModified304,
    peakInFlight: stats.peakInFlight,
    crashes: stats.crashes,
    timeline: stats.timeline,
    ...(stats.inWindow && settleMs !== undefined
      ? { settled: { afterMs: settleMs, requests: stats.inWindow.requests } }
      : {}),
  };
}
