import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { EDGE, dataCenters, edgeEnv, useInCoordinators, type DataCenter } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * What herdless's own answers tell any client about the origin, through the Worker in
 * workerd: an attacker who makes the origin fail reads the error page to learn where the
 * origin listens, then floods it there, around the cache and its cap. The Node twin is
 * test/node/security-disclosure.test.ts.
 */

describe("error pages never name the origin's address (Worker)", () => {
  it("a status no client can be given, a malformed answer, a body cut short, a reset and a stall: each a 5xx naming the fault and the path, never the origin's host or port", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { origin: { timeoutMs: 500 } });
    const [attackerDc, victimDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const faults = {
      [`${p}/status600`]: { status: 600 },
      [`${p}/malformed`]: { rawHeaderLines: "X Bad: 1\r\n" },
      [`${p}/cut`]: { mode: "truncate" as const },
      [`${p}/reset`]: { mode: "down" as const },
      [`${p}/stall`]: { mode: "hold" as const },
    };
    const paths = Object.keys(faults);
    await useInCoordinators(testEnv, [p, ...paths, `${p}/form`], clock, `guard-${crypto.randomUUID()}`);
    await origin.set({ paths: { ...faults, [`${p}/form`]: { mode: "down" } } });
    const { host, port } = new URL(origin.url);
    const attacks = [
      ...paths.map((path) => [path, {}] as const),
      [`${p}/form`, { method: "POST", body: "x" }] as const,
    ];
    for (const [path, init] of attacks) {
      const attack = await attackerDc.get(path, init);
      await attack.settled;
      expect(attack.status, path).toBeGreaterThanOrEqual(502);
      expect(attack.body, path).toContain(path);
      expect(attack.body, path).not.toContain(host);
      expect(attack.body, path).not.toContain(port);
    }
    await origin.release();
    const victim = await victimDc.get(p);
    // Plus one: the malformed answer, right after an answer, is asked once more (workerd reads
    // what a previous answer left on a pooled connection, a trailer section, as malformed too).
    expect([victim.status, victim.body]).toEqual([200, `${p} #${attacks.length + 2}`]);
  });

  it("the 508 of a request loop names the loop, never origin.url: an origin that reflects request headers shows the deployment's CDN-Loop entry to anyone", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const [attackerDc] = dataCenters(1, testEnv, clock) as [DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [p, `${p}/again`], clock, `guard-${crypto.randomUUID()}`);
    await attackerDc.get(p);
    // What an echoing page (a /headers debug route) would show the attacker.
    const entry = (await origin.stats()).requests[0]!.headers["cdn-loop"]!;
    const back = await attackerDc.get(`${p}/again`, { headers: { "cdn-loop": entry } });
    expect(back.status).toBe(508);
    expect(back.body).toContain("request loop");
    expect(back.body).not.toContain(new URL(origin.url).host);
  });

  it("a redirect the origin builds from the Host it is sent (origin.url's, the only one a Worker sends): stored, and relayed, it sends every visitor to the edge, never to the origin's address", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, victimDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [p, `${p}/cart`], clock, `guard-${crypto.randomUUID()}`);
    // origin.url carries a path (`/o/<namespace>`): what lies under it maps onto the edge's root.
    const own = `${origin.url}${p}`;
    await origin.set({
      paths: {
        [p]: { status: 302, headers: { location: `${own}/login?next=1`, "cache-control": "max-age=60" } },
        [`${p}/cart`]: { status: 303, headers: { location: `${own}/cart/1` } },
      },
    });
    const first = await attackerDc.get(p);
    await first.settled;
    expect([first.status, first.headers.get("location")]).toEqual([302, `${EDGE}${p}/login?next=1`]);
    const victim = await victimDc.get(p);
    expect(victim.cacheStatus).toContain("hit");
    expect(victim.headers.get("location")).toBe(`${EDGE}${p}/login?next=1`);
    expect(await origin.count(p)).toBe(1);
    const posted = await victimDc.get(`${p}/cart`, { method: "POST", body: "x" });
    expect([posted.status, posted.headers.get("location")]).toEqual([303, `${EDGE}${p}/cart/1`]);
  });
});
