import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import type { StatsSnapshot } from "../../src/core/admin/admin.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import {
  ADMIN_TOKEN,
  adminCall,
  dataCenters,
  edgeEnv,
  unreachableNamespace,
  useInCoordinators,
  type DataCenter,
} from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";
import { parsePrometheusText, sampleValue } from "../prometheus-text.ts";

async function stats(dc: DataCenter): Promise<StatsSnapshot> {
  const answer = await adminCall(dc, "GET", "stats");
  expect(answer.status).toBe(200);
  expect(answer.headers.get("cache-control")).toBe("no-store");
  return JSON.parse(answer.body) as StatsSnapshot;
}

/** The stats object `name` as the isolates' reports left it, read directly. */
function statsObject(name: string) {
  const namespace = env.STATS!;
  return namespace.get(namespace.idFromName(name)).view();
}

/** GETs `path` from `dc` and waits for its background work (a stats report, when one was due). */
async function served(dc: DataCenter, path: string): Promise<string> {
  const answer = await dc.get(path);
  expect(answer.status).toBe(200);
  await answer.settled;
  return answer.cacheStatus;
}

// Its own file: edge-stats.test.ts opens the deployment's ("global") breaker.
describe("deployment-wide numbers on Workers", () => {
  it("sums two isolates' requests, each reporting at most once per interval, in the stats and the Prometheus output", async () => {
    const clock = new ManualClock(Date.now());
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const testEnv = edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, statsReportIntervalMs: 10_000 } });
    await useInCoordinators(testEnv, ["/p", "/q"], clock);
    const name = `stats-${crypto.randomUUID()}`;
    const [a, b] = dataCenters(2, testEnv, clock, { ownIsolate: true, statsObject: name });
    const reports = async () =>
      (await statsObject(name)).reporters.map((r) => ({ reports: r.reports, requests: r.requests }));

    // A: five requests over four seconds; B: three at once. Each reports with its first only.
    for (let i = 0; i < 5; i++) {
      await served(a!, "/p");
      clock.advance(1_000);
    }
    for (let i = 0; i < 3; i++) await served(b!, "/q");
    expect(await reports()).toEqual([
      { reports: 1, requests: 1 },
      { reports: 1, requests: 1 },
    ]);
    // A's next request a millisecond before the interval is up: still no report.
    clock.advance(4_999);
    await served(a!, "/p");
    expect(await reports()).toEqual([
      { reports: 1, requests: 1 },
      { reports: 1, requests: 1 },
    ]);
    // At ten seconds the next request reports everything A counted since.
    clock.advance(1);
    await served(a!, "/p");
    expect(await reports()).toContainEqual({ reports: 2, requests: 7 });
    expect(await origin.count()).toBe(2);

    // B's stats read reports B's own (three) and reads the totals: 7 + 3 requests.
    const snapshot = await stats(b!);
    expect(snapshot.scope).toMatchObject({
      of: "deployment",
      isolates: 2,
      reportIntervalMs: 10_000,
      newestReportAt: clock.now(),
      oldestReportAt: clock.now(),
    });
    expect(snapshot).toMatchObject({ requests: 10, originRequests: 2, served: { miss: 2, hit: 8 } });

    // The Prometheus endpoint shows the same deployment totals, in a strictly valid exposition.
    const scrape = await adminCall(a!, "GET", "metrics");
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(scrape.headers.get("cache-control")).toBe("no-store");
    const families = parsePrometheusText(scrape.body);
    expect(sampleValue(families, "herdless_requests_total", { result: "hit" })).toBe(8);
    expect(sampleValue(families, "herdless_requests_total", { result: "miss" })).toBe(2);
    expect(sampleValue(families, "herdless_origin_requests_total", { outcome: "200" })).toBe(2);
    expect(sampleValue(families, "herdless_reporting_isolates")).toBe(2);
    expect(sampleValue(families, "herdless_breaker_state")).toBe(0);
    expect(families.get("herdless_requests_total")?.help).toMatch(/whole deployment/);
  });

  it("without the STATS binding, or with its object unreachable, shows this isolate's counters and says why", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const base = edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN } });
    const unbound: Env = { ...base, STATS: undefined };
    const [alone] = dataCenters(1, unbound, undefined, { ownIsolate: true });
    await served(alone!, "/u");
    const own = await stats(alone!);
    expect(own.scope).toEqual({ of: "isolate", reason: expect.stringMatching(/no STATS binding/) as string });
    expect(own.requests).toBe(1);
    const text = (await adminCall(alone!, "GET", "metrics")).body;
    expect(sampleValue(parsePrometheusText(text), "herdless_requests_total", { result: "miss" })).toBe(1);
    expect(text).toMatch(/by this isolate/);

    // The stats object down: requests are served as ever, the stats fall back to the isolate's.
    const down: Env = { ...base, STATS: unreachableNamespace(env.STATS!, { what: "stats object" }) };
    const [cut] = dataCenters(1, down, undefined, { ownIsolate: true });
    await served(cut!, "/u");
    expect((await cut!.get("/u")).cacheStatus).toMatch(/^herdless; hit/);
    const fallback = await stats(cut!);
    expect(fallback.scope).toEqual({
      of: "isolate",
      reason: expect.stringMatching(/stats object could not be reached/) as string,
    });
    expect(fallback.requests).toBe(2);
  });
});

describe("GET /__herdless/metrics on Workers: the admin token", () => {
  it("no token or a wrong one: 401 and no numbers; the token: the exposition", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN } }), undefined, {
      ownIsolate: true,
      statsObject: `stats-${crypto.randomUUID()}`,
    });
    await served(dc!, "/secret-page");
    // The attacker: no token, a wrong one, the token's prefix, the token in a query string.
    for (const token of [null, "wrong-token-0123456789", ADMIN_TOKEN.slice(0, -1)]) {
      const answer = await adminCall(dc!, "GET", "metrics", { token });
      expect(answer.status).toBe(401);
      expect(answer.headers.get("www-authenticate")).toBe('Bearer realm="herdless"');
      expect(answer.body).not.toMatch(/herdless_/);
    }
    const inQuery = await dc!.get(`/__herdless/metrics?token=${ADMIN_TOKEN}`);
    expect(inQuery.status).toBe(401);
    // The operator.
    const scrape = await adminCall(dc!, "GET", "metrics");
    expect(scrape.status).toBe(200);
    expect(sampleValue(parsePrometheusText(scrape.body), "herdless_requests_total", { result: "miss" })).toBe(1);
  });
});
