import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import type { StatsSnapshot } from "../../src/core/admin/admin.ts";
import {
  ADMIN_TOKEN,
  adminCall,
  dataCenters,
  edgeEnv,
  useGuardConfig,
  useInCoordinators,
  type DataCenter,
} from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

async function stats(dc: DataCenter): Promise<StatsSnapshot> {
  const answer = await adminCall(dc, "GET", "stats");
  expect(answer.status).toBe(200);
  expect(answer.headers.get("cache-control")).toBe("no-store");
  return JSON.parse(answer.body) as StatsSnapshot;
}

/** GETs `path` from `dc` and waits for its background work (a stats report, when one was due). */
async function served(dc: DataCenter, path: string): Promise<string> {
  const answer = await dc.get(path);
  expect(answer.status).toBe(200);
  await answer.settled;
  return answer.cacheStatus;
}

// This file's own workerd: opening the deployment's ("global") breaker here affects no other test file.
describe("GET /__herdless/stats on Workers", () => {
  it("counts the whole deployment's traffic (hits, misses, origin calls) and shows the deployment's breaker", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const testEnv = edgeEnv(origin.url, {
      admin: { token: ADMIN_TOKEN, purgePropagationMs: 20 },
      breaker: { failureThreshold: 2, minFailingKeys: 2 },
    });
    const paths = ["/a", "/b", "/c", "/d", "/e"];
    // The edge and the coordinators use the deployment's one guard object, with this config.
    await useGuardConfig(testEnv, "global");
    await useInCoordinators(testEnv, paths, systemClock);
    const [dc, other] = dataCenters(2, testEnv, undefined, { ownIsolate: true });

    const before = await stats(dc!);
    expect(before).toMatchObject({
      runtime: "cloudflare",
      mode: "durable-objects",
      scope: { of: "deployment", reportIntervalMs: 10_000 },
      requests: 0,
      originRequests: 0,
      breaker: "closed",
      originInFlight: 0,
      queueDepth: 0,
    });

    for (let i = 0; i < 3; i++) expect((await dc!.get("/a")).status).toBe(200);
    expect((await dc!.get("/b")).status).toBe(200);
    // Another isolate's traffic reaches the totals with its report (its first request's).
    await served(other!, "/a");
    const warm = await stats(dc!);
    expect(warm.scope).toMatchObject({ of: "deployment", isolates: 2 });
    // The other isolate's /a came from the key's object, not the origin: a hit.
    expect(warm.served).toMatchObject({ hit: 3, miss: 2, error: 0 });
    expect(warm).toMatchObject({
      requests: 5,
      hitRatio: 0.6,
      originRequests: 2,
      origin: { "200": 2, error: 0 },
      breaker: "closed",
    });
    expect(warm.topKeys[0]).toEqual({ key: "GET https://edge.test/a", requests: 4 });
    expect(warm.series.reduce((sum, s) => sum + s.origin, 0)).toBe(2);
    expect(await origin.count()).toBe(2);

    // Two origin failures from two keys open the breaker (failureThreshold 2, minFailingKeys 2); the next miss is refused without an origin request.
    await origin.set({ mode: "down" });
    expect((await dc!.get("/c")).status).toBe(502);
    expect((await dc!.get("/d")).status).toBe(502);
    const refused = await dc!.get("/e");
    expect(refused.status).toBe(503);
    expect(refused.cacheStatus).toMatch(/detail=breaker-open/);
    expect(await origin.count()).toBe(4);
    const open = await stats(dc!);
    expect(open.served).toMatchObject({ hit: 3, miss: 2, error: 2, refused: 1 });
    expect(open).toMatchObject({ requests: 8, originRequests: 4, origin: { "200": 2, error: 2 }, breaker: "open" });
    // Every isolate answers with the deployment's numbers and breaker.
    expect(await stats(other!)).toMatchObject({ breaker: "open", requests: 8, served: { miss: 2, hit: 3 } });
  });
});
