/**
 * Refresh-ahead in workerd across data centers: steady requests on a hot key whose origin
 * sends only `max-age=2` (no stale-while-revalidate) are all hits after warm-up, and the key's
 * coordinator lets one renewal per lifetime reach the origin for the whole deployment.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

describe("refresh-ahead, deployment-wide (2 data centers)", () => {
  it("steady requests on a max-age=2 key without SWR: every answer after warm-up is a hit, origin requests ≤ 1.1 × one per lifetime", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=2" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { defaults: { refreshAhead: 0.05 } });
    await useInCoordinators(testEnv, ["/hot"], clock, `guard-${crypto.randomUUID()}`);
    const dcs = dataCenters(2, testEnv, clock);
    for (const dc of dcs) expect((await dc.get("/hot")).status).toBe(200);
    expect(await origin.count()).toBe(1);

    const waited: string[] = [];
    let renewing = 0;
    // 30 s of traffic, one request every 50 ms over the data centers: 15 lifetimes of the key.
    for (let i = 0; i < 600; i++) {
      clock.advance(50);
      const answer = await dcs[i % dcs.length]!.get("/hot");
      if (answer.status !== 200 || !answer.cacheStatus.startsWith("herdless; hit; ")) waited.push(answer.cacheStatus);
      if (answer.cacheStatus.endsWith("detail=refresh-ahead")) renewing++;
      // The renewal runs behind the answer (ctx.waitUntil): let it land before the clock moves on.
      await answer.settled;
    }
    expect(waited).toEqual([]);
    expect(renewing).toBeGreaterThan(0);
    const renewals = (await origin.count()) - 1;
    expect(renewals).toBeGreaterThanOrEqual(14);
    expect(renewals).toBeLessThanOrEqual(16);
  });
});
