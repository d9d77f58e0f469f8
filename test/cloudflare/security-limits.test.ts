import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators, type DataCenter } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * Request sizes the Worker refuses itself, as Node's parser does: workerd under `npm start`
 * takes a request head of up to 128 KiB, so without its own limit the Worker asked the
 * origin for whatever an attacker wrote (a strict origin closing on it) and made a key of
 * it. The Node twin is the parser's 414 (test/node/security-probes.test.ts).
 */

describe("a request-target past 16 KiB (Worker)", () => {
  it("is a 414 naming it, for a GET, a relayed request and an admin path alike: never asked of the origin, never keyed; one within the limit is served", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, victimDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    // Long, but within the limit (and within the test origin's own 16 KiB head).
    const within = `${p}?${"a".repeat(12_000)}`;
    await useInCoordinators(testEnv, [p, within], clock, `guard-${crypto.randomUUID()}`);
    const over = `${p}?${"a".repeat(16 * 1024 - p.length)}`;
    for (const [path, init] of [
      [over, {}],
      [over, { headers: { cookie: "session=1" } }],
      [`/__herdless/stats?${"a".repeat(17_000)}`, {}],
    ] as const) {
      const attack = await attackerDc.get(path, init);
      await attack.settled;
      expect([attack.status, attack.cacheStatus]).toEqual([414, "herdless; detail=refused"]);
      expect(attack.body).toMatch(/^URI too long: the request-target \(\d+ bytes\) is over this cache's 16 KiB limit/);
    }
    expect(await origin.count()).toBe(0);
    const victim = await victimDc.get(within);
    expect([victim.status, victim.body]).toEqual([200, `${within} #1`]);
  });
});
