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

describe("a request head past 16 KiB (Worker)", () => {
  it("is a 431 naming it, for one large field, thousands of small ones, a long target with fields and a request with a Cookie alike: never asked of the origin; a head within the limit is served", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, victimDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const long = `${p}?${"a".repeat(10_000)}`;
    await useInCoordinators(testEnv, [p, long], clock, `guard-${crypto.randomUUID()}`);
    const many = Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [`x-h${i}`, "v"]));
    for (const [path, headers] of [
      [p, { "x-big": "a".repeat(100_000) }],
      [p, many],
      [long, { "x-filler": "a".repeat(10_000) }],
      [p, { cookie: `session=${"a".repeat(20_000)}` }],
    ] as const) {
      const attack = await attackerDc.get(path, { headers });
      await attack.settled;
      expect([attack.status, attack.cacheStatus]).toEqual([431, "herdless; detail=refused"]);
      expect(attack.body).toMatch(
        /^request header fields too large: the request-target and headers \(\d+ bytes\) are over this cache's 16 KiB limit/,
      );
    }
    expect(await origin.count()).toBe(0);
    // 12 KB of headers: within herdless's limit and the test origin's own.
    const victim = await victimDc.get(p, { headers: { "x-filler": "a".repeat(12_000) } });
    expect([victim.status, victim.body]).toEqual([200, `${p} #1`]);
  });
});
