import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { countingCoordinator, dataCenters, edgeEnv, settle, useInCoordinators, type Answer } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/** Four data centers (four Cache API caches) in front of one COORDINATOR namespace. */
const DCS = 4;

function expectOneBody(answers: Answer[], body: string): void {
  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  expect(new Set(answers.map((a) => a.body))).toEqual(new Set([body]));
}

describe("one origin request per key per expiry, across data centers", () => {
  it("400 concurrent requests (100 per data center) for one cold key: 1 origin request, 400 × 200 with one body", async () => {
    const origin = await testOrigin({ mode: "hold" });
    const testEnv = edgeEnv(origin.url);
    const dcs = dataCenters(DCS, testEnv);
    const pending = Promise.all(dcs.flatMap((dc) => Array.from({ length: 100 }, () => dc.get("/hot"))));
    await origin.waitFor({ held: 1 });
    await origin.set({ mode: "up" });
    const answers = await pending;
    expect(answers).toHaveLength(400);
    expectOneBody(answers, "/hot #1");
    expect(await origin.count()).toBe(1);
  });

  it("RFC 9211: of 4 data centers asking for one cold key at once, the one whose fill the origin answered says `stored`; the 3 that joined it at the key's object say `collapsed`, not `stored`", async () => {
    const origin = await testOrigin({ mode: "hold", headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/joined"], clock);
    const dcs = dataCenters(DCS, testEnv, clock, { ownIsolate: true });
    const pending = Promise.all(dcs.map((dc) => dc.get("/joined")));
    await origin.waitFor({ held: 1 });
    // Let the other data centers reach the key's object while its fill is at the origin.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await origin.set({ mode: "up" });
    const answers = await pending;
    expectOneBody(answers, "/joined #1");
    expect(answers.map((a) => a.cacheStatus).sort()).toEqual([
      ...Array.from({ length: DCS - 1 }, () => "herdless; fwd=uri-miss; fwd-status=200; ttl=60; collapsed"),
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
    expect(await origin.count()).toBe(1);
  });

  it("400 concurrent requests for one expired key: exactly 1 more origin request", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/page"], clock);
    const dcs = dataCenters(DCS, testEnv, clock);
    for (const dc of dcs) expect((await dc.get("/page")).body).toBe("/page #1");
    expect(await origin.count()).toBe(1);

    clock.advance(61_000);
    await origin.set({ mode: "hold" });
    const pending = Promise.all(dcs.flatMap((dc) => Array.from({ length: 100 }, () => dc.get("/page"))));
    await origin.waitFor({ held: 1 });
    await origin.set({ mode: "up" });
    const answers = await pending;
    expectOneBody(answers, "/page #2");
    expect(await origin.count()).toBe(2);
    // Every data center kept the fresher entry.
    for (const dc of dcs) expect((await dc.get("/page")).cacheStatus).toMatch(/^herdless; hit; ttl=60$/);
    expect(await origin.count()).toBe(2);
  });

  it(
    "50 keys × 8 requests × 4 data centers (1,600 requests): exactly 50 origin requests",
    { timeout: 60_000 },
    async () => {
      const origin = await testOrigin({ mode: "hold" });
      const testEnv = edgeEnv(origin.url);
      const dcs = dataCenters(DCS, testEnv);
      const keys = Array.from({ length: 50 }, (_, i) => `/k${i}`);
      const pending = Promise.all(
        dcs.flatMap((dc) =>
          keys.flatMap((key) => Array.from({ length: 8 }, () => dc.get(key).then((a) => ({ key, a })))),
        ),
      );
      // Generous: 1,600 requests reach the coordinators before the first origin call.
      await origin.waitFor({ held: 1 }, 20_000);
      await origin.set({ mode: "up" });
      const answers = await pending;
      expect(answers).toHaveLength(1_600);
      expect(answers.filter(({ a }) => a.status !== 200)).toEqual([]);
      for (const key of keys) expect(new Set(answers.filter((x) => x.key === key).map(({ a }) => a.body)).size).toBe(1);
      expect(await origin.count()).toBe(50);
      const stats = await origin.stats();
      expect(new Set(stats.requests.map((r) => r.path))).toEqual(new Set(keys));
    },
  );
});

describe("stale-while-revalidate from every data center", () => {
  it("after max-age every data center answers stale at once; the origin sees 1 revalidation in total", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60, stale-while-revalidate=600" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/swr"], clock);
    const dcs = dataCenters(DCS, testEnv, clock);
    for (const dc of dcs) expect((await dc.get("/swr")).body).toBe("/swr #1");
    expect(await origin.count()).toBe(1);

    clock.advance(61_000);
    const stale = await Promise.all(dcs.map((dc) => dc.get("/swr")));
    for (const answer of stale) {
      expect(answer.status).toBe(200);
      expect(answer.body).toBe("/swr #1");
      expect(answer.cacheStatus).toBe("herdless; hit; ttl=-1; detail=stale-while-revalidate");
    }
    await settle(stale, testEnv, ["/swr"]);
    expect(await origin.count()).toBe(2);
    // The fresher entry landed in every data center's cache.
    for (const dc of dcs) {
      const hit = await dc.get("/swr");
      expect(hit.cacheStatus).toMatch(/^herdless; hit; ttl=60$/);
      expect(hit.body).toBe("/swr #2");
    }
    expect(await origin.count()).toBe(2);
  });
});

describe("an expired stale-while-revalidate key under a spike, 4 data centers", () => {
  it("200 concurrent requests: 200 stale answers while the one refresh is still at the origin, 1 origin request, 1 coordinator call per data center", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60, stale-while-revalidate=600" } });
    const clock = new ManualClock(Date.now());
    const base = edgeEnv(origin.url);
    const { env: testEnv, fills } = countingCoordinator(base);
    await useInCoordinators(base, ["/expiring"], clock);
    const dcs = dataCenters(DCS, testEnv, clock, { ownIsolate: true });
    for (const dc of dcs) expect((await dc.get("/expiring")).body).toBe("/expiring #1");
    expect(await origin.count()).toBe(1);

    clock.advance(61_000);
    await origin.set({ mode: "hold" });
    const answers = await Promise.all(dcs.flatMap((dc) => Array.from({ length: 50 }, () => dc.get("/expiring"))));
    // Every answer came while the origin held what reached it: nobody waited on the refresh.
    expect(answers.filter((a) => a.body !== "/expiring #1")).toEqual([]);
    expect(new Set(answers.map((a) => a.cacheStatus))).toEqual(
      new Set(["herdless; hit; ttl=-1; detail=stale-while-revalidate"]),
    );
    await origin.waitFor({ held: 1 });
    await origin.set({ mode: "up" });
    await settle(answers, testEnv, ["/expiring"]);
    expect(await origin.count()).toBe(2);
    // One background refresh per data center (each isolate's), collapsed onto one origin request by the key's object.
    expect(fills()).toBe(DCS + DCS);
    for (const dc of dcs) expect((await dc.get("/expiring")).cacheStatus).toBe("herdless; hit; ttl=60");
    expect(await origin.count()).toBe(2);
  });
});

describe("an isolate under a spike on a key inside stale-while-revalidate", () => {
  it("100 concurrent stale answers start 1 background refresh (1 coordinator call), not one per request", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=1, stale-while-revalidate=600" } });
    const clock = new ManualClock(Date.now());
    const base = edgeEnv(origin.url);
    const { env: testEnv, fills } = countingCoordinator(base);
    await useInCoordinators(base, ["/spike"], clock);
    const [dc] = dataCenters(1, testEnv, clock, { ownIsolate: true });
    expect((await dc!.get("/spike")).body).toBe("/spike #1");
    expect(fills()).toBe(1);

    clock.advance(5_000);
    const answers = await Promise.all(Array.from({ length: 100 }, () => dc!.get("/spike")));
    for (const answer of answers) expect(answer.cacheStatus).toMatch(/detail=stale-while-revalidate/);
    await Promise.all(answers.map((a) => a.settled));
    expect(fills()).toBe(2);
    expect(await origin.count()).toBe(2);
  });
});
