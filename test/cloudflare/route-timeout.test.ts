/**
 * A route's own origin timeout in workerd: a long poll the origin holds past
 * `origin.timeoutMs` gets its answer on a route whose `timeoutMs` allows for it, and the
 * next poll is not refused; on a route without it, the 504 stays. A fill in the key's
 * Durable Object keeps to its route's timeout too. Times are scaled down (origin.timeoutMs
 * 600 ms) and waited out for real, as the origin answers over a real socket.
 */
import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

async function setup(delayMs: number) {
  const origin = await testOrigin({ delayMs, headers: { "cache-control": "no-store" } });
  const testEnv = edgeEnv(origin.url, {
    origin: { timeoutMs: 600 },
    // One key under test: the breaker stays out of the way.
    breaker: { failureThreshold: 1_000 },
    routes: [
      { match: "/poll/*", bypass: true, timeoutMs: 5_000 },
      { match: "/slow/*", bypass: true },
      { match: "/report/*", timeoutMs: 5_000 },
    ],
    coordinator: { lockLeaseMs: 6_000, waitTimeoutMs: 8_000 },
  });
  await useInCoordinators(testEnv, ["/report/q3", "/page/q3"], systemClock);
  return { origin, dcs: dataCenters(2, testEnv) };
}

describe("routes[].timeoutMs in workerd", () => {
  it("a long poll held 1.5 s on a route with timeoutMs 5000 gets its 200, and the next poll is not refused", async () => {
    const { origin, dcs } = await setup(1_500);
    for (const dc of dcs) {
      const answer = await dc.get("/poll/chat?u=1");
      expect([answer.status, answer.cacheStatus]).toEqual([200, "herdless; fwd=bypass; fwd-status=200"]);
    }
    expect(await origin.count()).toBe(2);
  });

  it("the same poll on a bypass route without it: 504 at origin.timeoutMs, as before", async () => {
    const { dcs } = await setup(1_500);
    const answer = await dcs[0]!.get("/slow/chat?u=1");
    expect([answer.status, answer.cacheStatus]).toEqual([504, "herdless; fwd=bypass; detail=origin-error"]);
  });

  it("a no-store report held 1.5 s: on a caching route with its own timeout 200 from every data center; without it 504, then 503 backoff", async () => {
    const { origin, dcs } = await setup(1_500);
    for (const dc of dcs) expect((await dc.get("/report/q3")).status).toBe(200);
    expect(await origin.count("/report/q3")).toBe(2);

    // As the red team met it: a caching route without its own timeout.
    const timedOut = await dcs[0]!.get("/page/q3");
    expect([timedOut.status, timedOut.cacheStatus]).toEqual([504, "herdless; fwd=uri-miss; detail=origin-error"]);
    const refused = await dcs[1]!.get("/page/q3");
    expect([refused.status, refused.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    expect(await origin.count("/page/q3")).toBe(1);
  });
});
