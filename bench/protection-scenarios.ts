/**
 * Origin protection (issue 12): the breaker must not open on one broken URL, a large body
 * must collapse and stream, hot keys must not go stale without stale-while-revalidate, and
 * a page that cannot be shared must not wait on another visitor's request.
 * Added to SCENARIOS when imported (bench/run.ts does); targets in protection-targets.ts.
 */
import { HERDLESS_RUNTIMES, keys, perLifetimeAfterWarmUp, scale, SCENARIOS } from "./scenarios.ts";
import type { LoadSpec } from "./types.ts";

/** The hot keys' warm-up, then 15 whole lifetimes of 2 s measured after it. */
const HOT_SETTLE_MS = 2_500;
const hotLoad = (quick: boolean): Omit<LoadSpec, "targets" | "host"> => ({
  connections: 100,
  durationMs: HOT_SETTLE_MS + scale(30_000, quick),
  paths: keys("/hot", 10),
  timeoutMs: 15_000,
  // The warmed copies expire before the load generator is up (2 s): the first lifetime of
  // the load warms the keys again, and "after warm-up" (answers and origin requests) counts
  // from the end of it.
  settleMs: HOT_SETTLE_MS,
});
/**
 * The per-route refresh-ahead setting: revalidate in the background in the last 5 % of a
 * key's freshness. A renewal then starts about (1 − 0.05) × TTL after the last one landed, so
 * it costs at most 1 ÷ 0.95 = 1.05 × one origin request per lifetime (less by the origin's
 * latency); 10 % would cost up to 1.11 ×. The window must only hold a request of the hot key
 * for the renewal to begin before expiry (100 ms of a 2 s lifetime: at the bench's rates
 * several per process or data center); a renewal still running at expiry lets the expiring
 * copy answer until it lands.
 */
export const REFRESH_AHEAD = { defaults: { refreshAhead: 0.05 } };

SCENARIOS.push(
  {
    name: "broken-url",
    summary:
      "10 keys (max-age=2) and one URL that always answers 500 (an application bug, no freshness: every request for it reaches the origin), 100 connections, 15 s: the breaker must not open, nothing may be refused",
    cacheControl: "max-age=2",
    runtimes: ["direct", ...HERDLESS_RUNTIMES],
    load: (quick) => ({
      connections: 100,
      durationMs: scale(15_000, quick),
      paths: [...keys("/broken-url", 10), "/broken-url/bug?status=500"],
      timeoutMs: 15_000,
    }),
  },
  {
    name: "large-body-herd",
    summary: "50 connections arrive at once on 1 cold key whose body is 20 MB, 1 request each",
    cacheControl: "max-age=60",
    runtimes: ["direct", ...HERDLESS_RUNTIMES],
    load: () => ({
      connections: 50,
      requestsPerConnection: 1,
      paths: ["/large/body?bytes=20000000"],
      timeoutMs: 30_000,
    }),
    ideal: () => ({ requests: 1, formula: "1 key, cold, fresh for 60 s: 1" }),
  },
  {
    name: "dynamic-page",
    summary:
      "1 page the origin answers `private` (a dynamic page: every request reaches the origin), 8 connections (what the origin takes at once), 10 s: a cache must add no wait to it",
    cacheControl: "private",
    runtimes: ["direct", ...HERDLESS_RUNTIMES, "nginx", "varnish"],
    load: (quick) => ({
      connections: 8,
      durationMs: scale(10_000, quick),
      paths: ["/dynamic/page"],
      timeoutMs: 15_000,
    }),
  },
  {
    name: "session-assets",
    summary:
      "1 stylesheet the origin marks `public, max-age=60`, warmed by a visitor without cookies, then 100 connections of signed-in visitors (each request carries a session cookie), 10 s: the copy must answer them",
    cacheControl: "public, max-age=60",
    runtimes: ["direct", ...HERDLESS_RUNTIMES, "nginx", "varnish"],
    load: (quick) => ({
      connections: 100,
      durationMs: scale(10_000, quick),
      paths: ["/assets/app.css"],
      timeoutMs: 15_000,
      headers: { cookie: "session=3f9a1c7e5b2d" },
    }),
    // Warmed and fresh for the whole run: no origin request is needed (the target says 0).
    warmPaths: ["/assets/app.css"],
  },
  {
    name: "hot-keys-baseline",
    summary:
      "10 warmed hot keys, 100 connections, 32.5 s (2.5 s warm-up, then 30 s measured); the origin sends only max-age=2 (no stale-while-revalidate); no refresh-ahead: the baseline of hot-keys",
    cacheControl: "max-age=2",
    runtimes: HERDLESS_RUNTIMES,
    load: hotLoad,
    warmPaths: keys("/hot", 10),
    ideal: perLifetimeAfterWarmUp(2),
  },
  {
    name: "hot-keys",
    summary: `the hot-keys-baseline load with refresh-ahead on (\`${JSON.stringify(REFRESH_AHEAD)}\`): nobody should wait on the origin after warm-up`,
    cacheControl: "max-age=2",
    runtimes: HERDLESS_RUNTIMES,
    load: hotLoad,
    warmPaths: keys("/hot", 10),
    ideal: perLifetimeAfterWarmUp(2),
    config: REFRESH_AHEAD,
    baselines: ["hot-keys-baseline"],
  },
);
