import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators, type DataCenter } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";
import type { OriginBehaviour } from "./origin-protocol.ts";

/**
 * Attacks that turn herdless's origin protection (per-key backoff, the breaker, the cap)
 * against the site's visitors, through the Worker in workerd with two data centers: the
 * attacker's requests in one, the victim's in the other (the key's Durable Object serves
 * both). The Node twin is test/node/security-protection.test.ts.
 */
async function setup(byHeader: Record<string, Partial<OriginBehaviour>>) {
  const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, byHeader });
  const clock = new ManualClock(Date.now());
  // A short origin timeout (waited out for real); a lax breaker: one key is under test.
  const testEnv = edgeEnv(origin.url, { origin: { timeoutMs: 600 }, breaker: { failureThreshold: 1_000 } });
  const [attackerDc, victimDc] = dataCenters(2, testEnv, clock);
  const p = `/${crypto.randomUUID().slice(0, 8)}`;
  await useInCoordinators(testEnv, [p], clock, `guard-${crypto.randomUUID()}`);
  return { origin, attackerDc: attackerDc!, victimDc: victimDc!, p, clock };
}

/**
 * The attacker's request for `p` with `headers`, then three visitors' in both data centers
 * while its fill waits on the origin (real time for ordering only).
 */
async function attackThenVictims(
  t: { attackerDc: DataCenter; victimDc: DataCenter; p: string },
  headers: Record<string, string>,
) {
  const attack = t.attackerDc.get(t.p, { headers });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const victims = await Promise.all([t.attackerDc.get(t.p), t.victimDc.get(t.p), t.victimDc.get(t.p)]);
  return { attack: await attack, victims };
}

describe("per-key backoff cannot be started by one client's inputs (Worker)", () => {
  it("an attacker's header that makes the origin answer 503 never backs the victim's cold page off", async () => {
    // The gateway's 503 carries no freshness: it is not stored, so only the backoff could refuse the victim.
    const { origin, attackerDc, victimDc, p } = await setup({ "x-debug": { status: 503, headers: {} } });
    // Six in a row, each past the one retry a sick status gets: on the old code the key waited 32 s.
    for (let i = 0; i < 6; i++) {
      const attack = await attackerDc.get(p, { headers: { "x-debug": "1" } });
      await attack.settled;
      expect(attack.status).toBe(503);
      expect(attack.cacheStatus).not.toMatch(/detail=backoff/);
    }
    const victim = await victimDc.get(p);
    expect([victim.status, victim.body]).toEqual([200, `${p} #7`]);
    expect(await origin.count()).toBe(7);
  });

  it("an attacker's header that stalls the origin past its timeout never backs the victim's cold page off", async () => {
    const { origin, attackerDc, victimDc, p } = await setup({ "x-debug": { mode: "hold" } });
    const attack = await attackerDc.get(p, { headers: { "x-debug": "1" } });
    await attack.settled;
    expect(attack.status).toBe(504);
    const victim = await victimDc.get(p);
    expect([victim.status, victim.body]).toEqual([200, `${p} #2`]);
    expect(await origin.count()).toBe(2);
    await origin.release();
  });
});

describe("a fill an attacker's header made fail is not the answer of visitors collapsed onto it (Worker)", () => {
  it("visitors in both data centers that joined a fill the origin stalled on the attacker's header ask again, and get the page, instead of the attacker's 504", async () => {
    const t = await setup({ "x-debug": { mode: "hold" } });
    const { origin, p } = t;
    const { attack, victims } = await attackThenVictims(t, { "x-debug": "1" });
    expect(attack.status).toBe(504);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, `${p} #2`]);
    expect(await origin.count()).toBe(2);
    await origin.release();
  });
});

describe("an answer about one client's input is not the answer of visitors collapsed onto it (Worker)", () => {
  it("visitors in both data centers that joined a fill the origin answered 404 for the attacker's X-Api-Version ask again together, and get the page", async () => {
    const t = await setup({ "x-api-version": { status: 404, delayMs: 400 } });
    const { origin, p } = t;
    expect((await t.victimDc.get(p)).status).toBe(200);
    t.clock.advance(61_000);
    const { attack, victims } = await attackThenVictims(t, { "x-api-version": "9" });
    expect(attack.status).toBe(404);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, `${p} #3`]);
    // The first fill, the attacker's, then one for every victim together.
    expect(await origin.count()).toBe(3);
  });

  it("on a cold key: visitors in both data centers collapsed onto a fill the origin answered 404 without freshness for the attacker's X-Api-Version get the page", async () => {
    const t = await setup({ "x-api-version": { status: 404, headers: {}, delayMs: 400 } });
    const { origin, p } = t;
    const { attack, victims } = await attackThenVictims(t, { "x-api-version": "9" });
    expect(attack.status).toBe(404);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, `${p} #2`]);
    expect(await origin.count()).toBe(2);
  });
});

describe("the breaker cannot be opened by answers an attacker makes malformed (Worker)", () => {
  it("an origin that answers malformed on many paths (a NUL from the query reflected into a header, a field name that is not a token, two Content-Lengths) never opens the breaker: the victim's cold page is served", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, victimDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    // As a CGI script's `print "Location: /next?$query\r\n"` writes ?r=%00, and kin.
    const malformed = ["location: /next?\u0000\r\n", "X Bad: 1\r\n", "content-length: 1\r\n"];
    const paths = Array.from({ length: 9 }, (_, i) => `${p}/redirect${i}`);
    await useInCoordinators(testEnv, [p, `${p}/home`, ...paths], clock, `guard-${crypto.randomUUID()}`);
    await origin.set({
      paths: Object.fromEntries(paths.map((path, i) => [path, { rawHeaderLines: malformed[i % malformed.length]! }])),
    });
    await (
      await attackerDc.get(`${p}/home`)
    ).settled;
    for (const path of paths) {
      const attack = await attackerDc.get(`${path}?r=%00`);
      await attack.settled;
      expect(attack.status).toBe(502);
      expect(attack.body).toMatch(/is not valid HTTP\/1\.1 \(workerd: /);
    }
    const victim = await victimDc.get(p);
    // The home page, nine attacks, the first asked once more (the last exchange with the origin
    // was an answer: workerd reads a trailer section a previous answer left on a pooled
    // connection as malformed too), the rest not (no answer since), and the victim's.
    expect([victim.status, victim.body]).toEqual([200, `${p} #12`]);
  });
});

describe("the breaker cannot be opened by one client's inputs (Worker)", () => {
  it("an attacker's header that makes the origin answer 503 on every path, sent on 8 paths, never opens the breaker: the victim's cold page is served", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: { "x-debug": { status: 503, headers: {} } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, victimDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const paths = Array.from({ length: 8 }, (_, i) => `${p}/page${i}`);
    await useInCoordinators(testEnv, [p, ...paths], clock, `guard-${crypto.randomUUID()}`);
    for (const path of paths) {
      const attack = await attackerDc.get(path, { headers: { "x-debug": "1" } });
      await attack.settled;
      expect([attack.status, attack.cacheStatus]).toEqual([
        503,
        "herdless; fwd=uri-miss; fwd-status=503; detail=origin-error",
      ]);
    }
    const victim = await victimDc.get(p);
    expect([victim.status, victim.body]).toEqual([200, `${p} #9`]);
  });
});
