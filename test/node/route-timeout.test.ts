/**
 * A route's own origin timeout on Node, one process and a 2-process Redis fleet, over real
 * sockets: a long poll the origin holds past `origin.timeoutMs` gets its answer on a route
 * whose `timeoutMs` allows for it, and the next poll is not refused; on a route without it,
 * the 504 stays. Times are scaled down (origin.timeoutMs 1 s) and waited out for real.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { deploy, send as get, type Deployment } from "./deployment.ts";

let origin: FragileOrigin | undefined;
let deployment: Deployment | undefined;

afterEach(async () => {
  await deployment?.close();
  await origin?.close();
  origin = undefined;
  deployment = undefined;
});

async function start(members: number) {
  origin = await startFragileOrigin({ cacheControl: "no-store" });
  const config = {
    origin: { timeoutMs: 1_000 },
    // One key under test: the breaker stays out of the way.
    breaker: { failureThreshold: 1_000 },
    routes: [
      { match: "/poll/*", bypass: true, timeoutMs: 8_000 },
      { match: "/slow/*", bypass: true },
      // A route that caches may wait longer too, below the lease and the wait.
      { match: "/report/*", timeoutMs: 8_000 },
    ],
    coordinator: { lockLeaseMs: 10_000, waitTimeoutMs: 12_000 },
  };
  deployment = await deploy(members === 1 ? "node" : "fleet", origin.url, config, members);
  return { urls: deployment.urls, origin };
}

describe.each([
  ["one Node process", 1],
  ["a fleet of two processes on Redis", 2],
])("routes[].timeoutMs: %s", (_, members) => {
  it("a long poll held 4.5 s on a route with timeoutMs 8000 gets its 200 (past origin.timeoutMs and an idle origin socket's 4 s), and the next poll is not refused", async () => {
    const t = await start(members);
    const first = await get(t.urls[0]!, "/poll/chat?latency=4500");
    expect([first.status, first.cacheStatus]).toEqual([200, "herdless; fwd=bypass; fwd-status=200"]);
    const next = await get(t.urls.at(-1)!, "/poll/chat?latency=1500");
    expect([next.status, next.cacheStatus]).toEqual([200, "herdless; fwd=bypass; fwd-status=200"]);
    expect(t.origin.stats().requests).toBe(2);
  });

  it("the same poll on a bypass route without it: 504 at origin.timeoutMs, as before", async () => {
    const t = await start(members);
    const startedAt = Date.now();
    const answer = await get(t.urls[0]!, "/slow/chat?latency=2500");
    expect([answer.status, answer.cacheStatus]).toEqual([504, "herdless; fwd=bypass; detail=origin-error"]);
    expect(Date.now() - startedAt).toBeLessThan(2_000);
  });

  it("a no-store report held 1.5 s on a route that caches with its own timeout: 200, and the next one is not backed off", async () => {
    const t = await start(members);
    for (const url of t.urls) {
      const answer = await get(url, "/report/q3?latency=1500");
      expect(answer.status).toBe(200);
    }
    expect(t.origin.stats().requests).toBe(t.urls.length);
  });
});
