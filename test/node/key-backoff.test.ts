/**
 * Per-key backoff on Node, one process and a 2-process Redis fleet: a key whose origin call
 * timed out is not asked again until its backoff passes, for the whole fleet.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { deploy, send as get, type Answer, type Deployment } from "./deployment.ts";

let origin: FragileOrigin | undefined;
let deployment: Deployment | undefined;

afterEach(async () => {
  await deployment?.close();
  await origin?.close();
  origin = undefined;
  deployment = undefined;
});

/** `members` herdless processes (one: local; more: a fleet on a fresh Redis) before a fragile origin. */
async function start(
  members: number,
  ordinaryRequestHeaders: string[] = [],
): Promise<{ urls: string[]; clock: Deployment["clock"]; origin: FragileOrigin }> {
  origin = await startFragileOrigin({ cacheControl: "max-age=10, stale-if-error=600" });
  // A short origin timeout: the test waits it out for real once per retry. A lax breaker: one key is under test.
  const config = {
    origin: { timeoutMs: 600, ordinaryRequestHeaders },
    breaker: { failureThreshold: 1_000, probeIntervalMs: 1_000 },
  };
  deployment = await deploy(members === 1 ? "node" : "fleet", origin.url, config, members);
  return { urls: deployment.urls, clock: deployment.clock, origin };
}

describe.each([
  ["one Node process", 1],
  ["a fleet of two processes on Redis", 2],
])("per-key backoff: %s", (_, members) => {
  it("5 stale requests for a key whose origin times out: 1 origin call, 5 stale answers; after the backoff one retry; a success resets it", async () => {
    const t = await start(members);
    const at = (i: number) => t.urls[i % t.urls.length]!;
    for (const url of t.urls) expect((await get(url, "/page")).status).toBe(200);
    expect(t.origin.stats().requests).toBe(1);
    t.clock.advance(11_000);
    t.origin.set({ hang: true });

    const answers: Answer[] = [];
    for (let i = 0; i < 5; i++) answers.push(await get(at(i), "/page"));
    expect(t.origin.stats().requests).toBe(2);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(answers[0]!.cacheStatus).toBe("herdless; fwd=stale; ttl=-1; detail=stale-if-error");
    for (const a of answers.slice(1)) expect(a.cacheStatus).toBe("herdless; fwd=stale; ttl=-1; detail=backoff");

    // The first backoff is breaker.backoffBaseMs (1 s) at most, and for requests their copy answers
    // breaker.probeIntervalMs (1 s) to half as much again: then one retry, from whichever member.
    t.clock.advance(1_500);
    for (let i = 0; i < 3; i++) await get(at(i + 1), "/page");
    expect(t.origin.stats().requests).toBe(3);

    // The origin heals; after the second backoff (2 s at most) the retry succeeds and resets the key.
    t.origin.set({ hang: false });
    t.clock.advance(2_000);
    const healed = await get(at(0), "/page");
    expect(healed.cacheStatus).toMatch(/^herdless; fwd=stale; fwd-status=(200|304); ttl=10; stored$/);
    expect(t.origin.stats().requests).toBe(4);
    // Reset: the next time it fails, its backoff starts from the base (1 s), not 4 s.
    t.clock.advance(11_000);
    t.origin.set({ hang: true });
    await get(at(1), "/page");
    t.clock.advance(1_500);
    await get(at(0), "/page");
    expect(t.origin.stats().requests).toBe(6);
  });

  it("nothing stored: a quick 503 with Retry-After from every member, no origin call, while the key backs off", async () => {
    const t = await start(members);
    t.origin.set({ hang: true });
    const first = await get(t.urls[0]!, "/cold");
    expect([first.status, first.cacheStatus]).toEqual([504, "herdless; fwd=uri-miss; detail=origin-error"]);
    for (const url of t.urls) {
      const refused = await get(url, "/cold");
      expect([refused.status, refused.cacheStatus, refused.retryAfter]).toEqual([
        503,
        "herdless; fwd=uri-miss; detail=backoff",
        "1",
      ]);
    }
    expect(t.origin.stats().requests).toBe(1);
  });

  it("every visitor sends the app's own header: listed in origin.ordinaryRequestHeaders, a hung cold key still backs off", async () => {
    const app = { headers: { "x-app-version": "7" } };
    // Unlisted, the header is any one client's own input: its failure backs nobody off, so each request asks again.
    let t = await start(members);
    t.origin.set({ hang: true });
    for (const url of t.urls) expect((await get(url, "/cold", app)).status).toBe(504);
    expect(t.origin.stats().requests).toBe(t.urls.length);
    await deployment?.close();
    await origin?.close();

    t = await start(members, ["X-App-Version"]);
    t.origin.set({ hang: true });
    expect((await get(t.urls[0]!, "/cold", app)).status).toBe(504);
    for (const url of t.urls) {
      const refused = await get(url, "/cold", app);
      expect([refused.status, refused.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    }
    expect(t.origin.stats().requests).toBe(1);
  });
});
