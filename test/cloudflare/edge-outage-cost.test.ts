/**
 * What an outage costs the Worker in Durable Object requests: a stale copy standing in for the
 * key's refusal (breaker open, key backing off) is answered by the edge that holds it without
 * a call to the key's object until the refusal's retry time; then one request asks again, and
 * when the origin is back that request is the breaker's probe and fills the key.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import {
  ADMIN_TOKEN,
  adminCall,
  countingCoordinator,
  dataCenters,
  EDGE,
  edgeEnv,
  guardSnapshot,
  useGuard,
  useInCoordinators,
  type DataCenter,
} from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const PROBE_INTERVAL_MS = 5_000;
const BREAKER_OPEN_STALE = /^herdless; fwd=stale; ttl=-\d+; detail=breaker-open$/;

/**
 * Data centers (own caches and isolates) that hold `paths` from one origin request each, their
 * calls to the keys' objects counted; then the origin goes down, the copies expire, and cold
 * keys open the breaker. `at`: the moment it opened (its next probe is a probe interval later).
 * `beforeDown`: what happens while the origin is still up.
 */
async function outage(
  paths: string[],
  headers: Record<string, string>,
  beforeDown?: (dc1: DataCenter, clock: ManualClock) => Promise<void>,
) {
  const clock = new ManualClock(Date.now());
  const origin = await testOrigin({ headers });
  const testEnv = edgeEnv(origin.url, {
    breaker: { failureThreshold: 3, minFailingKeys: 3, probeIntervalMs: PROBE_INTERVAL_MS },
    origin: { errorTtlMs: 0 },
    admin: { token: ADMIN_TOKEN, purgePropagationMs: 20 },
  });
  const run = crypto.randomUUID();
  // Keys of this run's own: a key that failed in another test backs off there, and asks nothing.
  const colds = Array.from({ length: 4 }, (_, i) => `/outage-cost/cold${i}-${run}`);
  const guardName = `outage-cost-${run}`;
  await useGuard(testEnv, guardName, clock);
  await useInCoordinators(testEnv, [...paths, ...colds], clock, guardName);
  const counted = countingCoordinator(testEnv);
  const [dc0, dc1, opener] = dataCenters(3, counted.env, clock, { ownIsolate: true });
  for (const path of paths) for (const dc of [dc0!, dc1!]) expect((await dc.get(path)).status).toBe(200);
  expect(await origin.count()).toBe(paths.length);
  await beforeDown?.(dc1!, clock);
  await origin.set({ mode: "down" });
  clock.advance(3_000);
  for (const path of colds) await opener!.get(path);
  expect((await guardSnapshot(guardName)).breaker).toBe("open");
  return { clock, origin, dc0: dc0!, dc1: dc1!, fills: counted.fills, at: clock.now() };
}

describe("an outage costs one call to a key's object per retry time, not one per stale answer (workerd)", () => {
  it("40 stale answers within a probe interval cost one call; at the probe's time the next request fills and later ones are hits", async () => {
    const { clock, origin, dc0, dc1, fills, at } = await outage(["/outage-cost/page"], {
      "cache-control": "max-age=2, stale-if-error=600",
    });
    const before = fills();
    const answers = [];
    for (let i = 0; i < 40; i++) {
      answers.push(await dc0.get("/outage-cost/page"));
      clock.advance(100);
    }
    expect(answers.map((a) => [a.status, a.body])).toEqual(answers.map(() => [200, "/outage-cost/page #1"]));
    for (const answer of answers) expect(answer.cacheStatus).toMatch(BREAKER_OPEN_STALE);
    // Was 40: every stale answer asked the key's object, which answered the breaker's refusal.
    expect(fills() - before).toBe(1);

    // Another data center asks 100 ms before the probe is due: it is told so, and believes it no longer.
    clock.advance(at + PROBE_INTERVAL_MS - 100 - clock.now());
    expect((await dc1.get("/outage-cost/page")).cacheStatus).toMatch(BREAKER_OPEN_STALE);
    expect(fills() - before).toBe(2);

    // The origin is back; at the probe's time the next request is the probe and fills the key.
    await origin.set({ mode: "up" });
    clock.advance(100);
    const probe = await dc1.get("/outage-cost/page");
    expect(probe.status).toBe(200);
    expect(probe.body).not.toBe("/outage-cost/page #1");
    expect(probe.cacheStatus).toBe("herdless; fwd=stale; fwd-status=200; ttl=2; stored");
    // The other data center's refusal ran out at the same time: it takes the new copy from the key's object.
    expect((await dc0.get("/outage-cost/page")).cacheStatus).toBe("herdless; hit; ttl=2");
    const calls = fills();
    expect((await dc0.get("/outage-cost/page")).cacheStatus).toBe("herdless; hit; ttl=2");
    expect((await dc1.get("/outage-cost/page")).cacheStatus).toBe("herdless; hit; ttl=2");
    expect(fills()).toBe(calls);
    expect(await origin.count("/outage-cost/page")).toBe(2);
  });

  it("the key's object sends a newer copy than this data center's with its refusal: answered with it, then with no call", async () => {
    const path = "/outage-cost/newer";
    // Before the outage dc1 renewed the key; dc0 still holds the copy before.
    const renewed = async (dc1: DataCenter, clock: ManualClock) => {
      clock.advance(3_000);
      expect((await dc1.get(path)).body).not.toBe(`${path} #1`);
    };
    const { dc0, fills } = await outage([path], { "cache-control": "max-age=2, stale-if-error=600" }, renewed);
    const before = fills();
    const answers = [await dc0.get(path), await dc0.get(path), await dc0.get(path)];
    const newer = answers[0]!.body;
    expect(newer).not.toBe(`${path} #1`);
    expect(answers.map((a) => [a.body, a.cacheStatus.replace(/ttl=-\d+/, "ttl")])).toEqual(
      answers.map(() => [newer, "herdless; fwd=stale; ttl; detail=breaker-open"]),
    );
    expect(fills() - before).toBe(1);
  });

  it("a hard purge while the refusal stands: the purged copy is never answered, the key's object is asked", async () => {
    const { clock, dc0, fills } = await outage(["/outage-cost/purged"], {
      "cache-control": "max-age=2, stale-if-error=600",
    });
    expect((await dc0.get("/outage-cost/purged")).cacheStatus).toMatch(BREAKER_OPEN_STALE);
    const purge = await adminCall(dc0, "POST", "purge", { body: { urls: [`${EDGE}/outage-cost/purged`] } });
    expect(purge.status).toBe(200);
    clock.advance(100);
    const before = fills();
    const after = await dc0.get("/outage-cost/purged");
    expect([after.status, after.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=breaker-open"]);
    expect(after.body).not.toContain("/outage-cost/purged #1");
    expect(fills() - before).toBe(1);
  });

  it("a must-revalidate copy is never served stale: every request gets the breaker's 503 it got before, from the key's object", async () => {
    const { clock, dc0, fills } = await outage(["/outage-cost/strict"], {
      "cache-control": "max-age=2, must-revalidate, stale-if-error=600",
    });
    const before = fills();
    const answers = [];
    for (let i = 0; i < 5; i++) {
      answers.push(await dc0.get("/outage-cost/strict"));
      clock.advance(100);
    }
    expect(answers.map((a) => [a.status, a.cacheStatus])).toEqual(
      answers.map(() => [503, "herdless; fwd=stale; detail=breaker-open"]),
    );
    expect(fills() - before).toBe(5);
  });
});
