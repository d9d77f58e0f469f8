/**
 * Per-key backoff in workerd, across four data centers: the key's Durable Object keeps the
 * backoff, so a key whose origin call timed out is not asked again by any data center
 * until its backoff passes.
 */
import { abortAllDurableObjects } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators, type Answer } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

async function setup(paths: string[], ordinaryRequestHeaders: string[] = []) {
  const guardName = `guard-${crypto.randomUUID()}`;
  const origin = await testOrigin({ headers: { "cache-control": "max-age=60, stale-if-error=600" } });
  const clock = new ManualClock(Date.now());
  // A short origin timeout (waited out for real once per retry); a lax breaker: one key is under test.
  const testEnv = edgeEnv(origin.url, {
    origin: { timeoutMs: 600, ordinaryRequestHeaders },
    breaker: { failureThreshold: 1_000, probeIntervalMs: 1_000 },
  });
  await useInCoordinators(testEnv, paths, clock, guardName);
  return {
    origin,
    clock,
    dcs: dataCenters(4, testEnv, clock),
    reload: () => useInCoordinators(testEnv, paths, clock, guardName),
  };
}

describe("per-key backoff, deployment-wide (4 data centers)", () => {
  it("5 stale requests for a key whose origin times out: 1 origin call, 5 stale answers; after the backoff one retry; a success resets it", async () => {
    const { origin, clock, dcs } = await setup(["/page"]);
    const at = (i: number) => dcs[i % dcs.length]!;
    for (const dc of dcs) expect((await dc.get("/page")).status).toBe(200);
    expect(await origin.count()).toBe(1);
    clock.advance(61_000);
    await origin.set({ mode: "hold" });

    const answers: Answer[] = [];
    for (let i = 0; i < 5; i++) answers.push(await at(i).get("/page"));
    expect(await origin.count()).toBe(2);
    expect(answers.map((a) => [a.status, a.body])).toEqual(Array(5).fill([200, "/page #1"]));
    expect(answers[0]!.cacheStatus).toBe("herdless; fwd=stale; ttl=-1; detail=stale-if-error");
    for (const a of answers.slice(1)) expect(a.cacheStatus).toBe("herdless; fwd=stale; ttl=-1; detail=backoff");

    // After the first backoff (1 s at most; for requests their copy answers, probeIntervalMs, 1 s,
    // to half as much again), one retry from whichever data center asks first.
    clock.advance(1_500);
    for (let i = 0; i < 3; i++) await at(i + 1).get("/page");
    expect(await origin.count()).toBe(3);

    // The origin heals; after the second backoff (2 s at most) the retry succeeds and resets the key.
    await origin.set({ mode: "up" });
    await origin.release();
    clock.advance(2_000);
    const healed = await at(2).get("/page");
    expect(healed.cacheStatus).toBe("herdless; fwd=stale; fwd-status=200; ttl=60; stored");
    expect(await origin.count()).toBe(4);
    // Reset: the next failure backs off from the base (1 s), not 4 s.
    clock.advance(61_000);
    await origin.set({ mode: "hold" });
    await at(3).get("/page");
    clock.advance(1_500);
    await at(0).get("/page");
    expect(await origin.count()).toBe(6);
    await origin.release();
  });

  it("nothing stored: a quick 503 with Retry-After from every data center, no origin call", async () => {
    const { origin, dcs } = await setup(["/cold"]);
    await origin.set({ mode: "hold" });
    const first = await dcs[0]!.get("/cold");
    expect([first.status, first.cacheStatus]).toEqual([504, "herdless; fwd=uri-miss; detail=origin-error"]);
    for (const dc of dcs) {
      const refused = await dc.get("/cold");
      expect([refused.status, refused.cacheStatus, refused.headers.get("retry-after")]).toEqual([
        503,
        "herdless; fwd=uri-miss; detail=backoff",
        "1",
      ]);
    }
    expect(await origin.count()).toBe(1);
    await origin.release();
  });

  it("every visitor sends the app's own header: listed in origin.ordinaryRequestHeaders, a hung cold key still backs off", async () => {
    const app = { headers: { "x-app-version": "7" } };
    // Unlisted, the header is any one client's own input: its failure backs nobody off, so the next request asks again.
    const unlisted = await setup(["/app-unlisted"]);
    await unlisted.origin.set({ mode: "hold" });
    expect((await unlisted.dcs[0]!.get("/app-unlisted", app)).status).toBe(504);
    expect((await unlisted.dcs[1]!.get("/app-unlisted", app)).status).toBe(504);
    expect(await unlisted.origin.count()).toBe(2);
    await unlisted.origin.release();

    const { origin, dcs } = await setup(["/app-listed"], ["X-App-Version"]);
    await origin.set({ mode: "hold" });
    expect((await dcs[0]!.get("/app-listed", app)).status).toBe(504);
    for (const dc of dcs) {
      const refused = await dc.get("/app-listed", app);
      expect([refused.status, refused.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    }
    expect(await origin.count()).toBe(1);
    await origin.release();
  });

  it("outlives the eviction of the key's object: the rebuilt object still refuses the key", async () => {
    const { origin, dcs, reload } = await setup(["/evicted"]);
    await origin.set({ mode: "hold" });
    expect((await dcs[0]!.get("/evicted")).status).toBe(504);
    await origin.release();
    await abortAllDurableObjects();
    // The rebuilt object gets the test's clock again; its backoff comes from its storage.
    await reload();
    const refused = await dcs[1]!.get("/evicted");
    expect([refused.status, refused.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    expect(await origin.count()).toBe(1);
  });
});
