import { describe, expect, it } from "vitest";
import { ManualClock, systemClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, guardSnapshot, useGuard, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/** The breaker's outcomes in workerd, seen from four data centers sharing one guard object. */
const DCS = 4;

describe("the breaker opens on a sick origin, not on one broken URL (workerd, 4 data centers)", () => {
  it(
    "100 consecutive 500s from one URL and 100 TRACE + 100 Expect requests leave every other URL and every POST served",
    { timeout: 180_000 },
    async () => {
      // /broken answers 500 with no freshness, as an application bug would.
      const origin = await testOrigin({ paths: { "/broken": { status: 500, headers: {} } } });
      // As sensitive as it gets: any two sick calls, even from one URL, would open it.
      const testEnv = edgeEnv(origin.url, { breaker: { failureThreshold: 2, minFailingKeys: 1 } });
      const others = Array.from({ length: 20 }, (_, i) => `/other${i}`);
      const pages = Array.from({ length: 100 }, (_, i) => `/page${i}`);
      // One guard for the deployment: the coordinators' fills and the edge's relays (POST) both count in it.
      await useGuard(testEnv, "global", systemClock);
      await useInCoordinators(testEnv, ["/broken", ...others, ...pages], systemClock, "global");
      const dcs = dataCenters(DCS, testEnv, systemClock, { ownIsolate: true });
      const dc = (i: number) => dcs[i % DCS]!;

      for (let i = 0; i < 100; i++) expect((await dc(i).get("/broken")).status).toBe(500);
      expect(await origin.count("/broken")).toBe(100);
      // Requests the runtime will not send as they are: never counted against the origin.
      const traces = await Promise.all(pages.map((path, i) => dc(i).get(path, { method: "TRACE" })));
      expect(traces.filter((a) => a.status !== 405)).toEqual([]);
      await Promise.all(
        pages.map((_, i) =>
          dc(i).get(`/upload${i}`, { method: "POST", body: "x".repeat(100), headers: { expect: "100-continue" } }),
        ),
      );
      const answers = await Promise.all(
        others.flatMap((path, i) => [
          dc(i)
            .get(path)
            .then((a) => ({ what: `GET ${path}`, ...a })),
          dc(i)
            .get("/login", { method: "POST", body: "user=a" })
            .then((a) => ({ what: "POST /login", ...a })),
        ]),
      );
      const refused = answers.filter((a) => a.status !== 200).map((a) => `${a.what}: ${a.status} ${a.cacheStatus}`);
      expect(refused).toEqual([]);
      expect(await origin.count("/login")).toBe(others.length);
      expect((await guardSnapshot("global")).breaker).toBe("closed");
    },
  );
});

describe("recovery after an outage (workerd, 4 data centers)", () => {
  it(
    "every key served stale while the origin was down is refreshed once it is back: one origin request per key for the deployment",
    { timeout: 120_000 },
    async () => {
      const clock = new ManualClock(Date.now());
      const probeIntervalMs = 5_000;
      const origin = await testOrigin({ headers: { "cache-control": "max-age=10, stale-if-error=600" } });
      const testEnv = edgeEnv(origin.url, {
        // Long backoffs: a key that failed during the outage waits 10–20 s on its own.
        breaker: { failureThreshold: 3, minFailingKeys: 3, probeIntervalMs, backoffBaseMs: 20_000 },
        origin: { errorTtlMs: 0 },
      });
      const keys = Array.from({ length: 8 }, (_, i) => `/recovery/page${i}`);
      const colds = Array.from({ length: 5 }, (_, i) => `/recovery/cold${i}`);
      const probe = "/recovery/probe";
      const guardName = `recovery-${crypto.randomUUID()}`;
      await useGuard(testEnv, guardName, clock);
      await useInCoordinators(testEnv, [...keys, ...colds, probe], clock, guardName);
      const dcs = dataCenters(DCS, testEnv, clock, { ownIsolate: true });
      const before = new Map<string, string>();
      for (const key of keys) {
        for (const dc of dcs) before.set(key, (await dc.get(key)).body);
      }
      expect(await origin.count()).toBe(keys.length);

      // Down (connections reset): cold keys open the breaker, every cached key is served stale everywhere.
      await origin.set({ mode: "down" });
      clock.advance(11_000);
      const opening = [];
      for (const [i, path] of colds.entries()) opening.push((await dcs[i % DCS]!.get(path)).status);
      expect(opening).toEqual([502, 502, 502, 503, 503]);
      expect((await guardSnapshot(guardName)).breaker).toBe("open");
      for (const key of keys)
        for (const dc of dcs) expect(await dc.get(key)).toMatchObject({ status: 200, body: before.get(key) });

      // Back: the next probe closes the breaker; within one more probe interval every key in
      // every data center gets the new copy, however long its own backoff, and the origin
      // sees one request per key.
      await origin.set({ mode: "up" });
      clock.advance(probeIntervalMs);
      expect((await dcs[0]!.get(probe)).status).toBe(200);
      const atRecovery = await origin.stats();
      clock.advance(probeIntervalMs);
      for (const key of keys) {
        const answers = [];
        for (const dc of dcs) answers.push(await dc.get(key));
        expect(answers.map((a) => a.status)).toEqual(dcs.map(() => 200));
        expect(new Set(answers.map((a) => a.body)).size).toBe(1);
        expect(answers[0]!.body).not.toBe(before.get(key));
      }
      const requests = (await origin.stats()).requests.slice(atRecovery.count);
      expect(keys.map((key) => requests.filter((r) => r.path === key).length)).toEqual(keys.map(() => 1));
      expect(requests).toHaveLength(keys.length);
      expect((await guardSnapshot(guardName)).breaker).toBe("closed");
    },
  );
});
