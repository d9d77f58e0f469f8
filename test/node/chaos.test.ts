import { afterEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin, type FragileOriginOptions } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

let origin: FragileOrigin;
let proxy: RunningServer;
let clock: ManualClock;

async function setup(
  originOptions: FragileOriginOptions,
  config: Omit<ConfigInput, "origin"> & { origin?: Partial<ConfigInput["origin"]> } = {},
) {
  origin = await startFragileOrigin({ cacheControl: "max-age=10, stale-if-error=600", ...originOptions });
  clock = new ManualClock(Date.now());
  const logger = jsonLogger("silent");
  const parsed = parseConfig({ ...config, origin: { url: origin.url, timeoutMs: 300, ...config.origin } });
  proxy = await startServer({ stack: localStack({ config: parsed, logger, clock }), logger, port: 0 });
}

afterEach(async () => {
  await proxy?.close();
  await origin?.close();
});

async function get(path: string) {
  try {
    const res = await fetch(`${proxy.url}${path}`);
    return {
      status: res.status,
      retryAfter: res.headers.get("retry-after"),
      cacheStatus: res.headers.get("cache-status") ?? "",
      body: await res.text(),
    };
  } catch (error) {
    return { status: 0, retryAfter: null, cacheStatus: String(error), body: "" };
  }
}

describe("origin guard: the cap holds against a crashing origin", () => {
  it("500 concurrent cold misses across 50 keys never push the origin past 4 in flight", async () => {
    // The origin's timeout is generous here: this test is about the cap, and on a loaded 2-core
    // machine a 20 ms origin can pass 300 ms; timeouts then (rightly) open the breaker.
    await setup(
      { crashAbove: 4, latencyMs: 20 },
      { origin: { maxConcurrency: 4, queueTimeoutMs: 5_000, timeoutMs: 3_000 } },
    );
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => get(`/k${i % 50}`)));
    const stats = origin.stats();
    expect(stats.peakInFlight).toBeLessThanOrEqual(4);
    expect(stats.crashes).toBe(0);
    expect(stats.requests).toBe(50);
    for (const r of results) expect(r.status === 200 || (r.status === 503 && r.retryAfter !== null)).toBe(true);
  });

  it("a queue past origin.maxQueue answers 503 with Retry-After, never an extra origin request", async () => {
    await setup({ crashAbove: 1, latencyMs: 50 }, { origin: { maxConcurrency: 1, maxQueue: 5 } });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => get(`/q${i}`)));
    const shed = results.filter((r) => r.status === 503);
    expect(shed.length).toBeGreaterThan(0);
    for (const r of shed) {
      expect(r.retryAfter).not.toBeNull();
      expect(r.cacheStatus).toContain("detail=queue-full");
    }
    expect(origin.stats().requests).toBe(results.length - shed.length);
    expect(origin.stats().crashes).toBe(0);
  });
});

describe("chaos: a cached page survives every way the origin can fail", () => {
  const failures: [string, Partial<FragileOriginOptions>][] = [
    ["origin down (503)", { down: true }],
    ["slow past the timeout", { latencyMs: 1_000 }],
    ["5xx", { status: 500 }],
    ["truncated body", { truncate: true }],
    ["connection reset", { reset: true }],
  ];

  it.each(failures)("%s: stale served, nothing wrong stored", async (_, failure) => {
    await setup({});
    const good = await get("/page");
    origin.set(failure);
    clock.advance(20_000);
    const during = await Promise.all(Array.from({ length: 20 }, () => get("/page")));
    for (const r of during) {
      expect(r.status).toBe(200);
      expect(r.body).toBe(good.body);
    }
    expect(during.some((r) => r.cacheStatus.includes("detail=stale-if-error"))).toBe(true);
    // Recovery: the next fetch stores the origin's real answer, not anything from the failure.
    origin.set({ down: false, latencyMs: 0, status: undefined, truncate: false, reset: false });
    origin.bump("/page");
    clock.advance(20_000);
    const after = await get("/page");
    expect(after.status).toBe(200);
    expect(after.body).not.toBe(good.body);
    expect(after.body.length).toBe(good.body.length);
  });

  it("with origin.errorTtlMs (opt-in), an uncached page with the origin down gets the error, briefly cached, not a stream of origin requests", async () => {
    await setup({ down: true }, { origin: { errorTtlMs: 2_000 } });
    const first = await get("/new");
    expect(first.status).toBe(503);
    await Promise.all(Array.from({ length: 20 }, () => get("/new")));
    expect(origin.stats().requests).toBe(1);
  });
});

describe("circuit breaker", () => {
  it("opens after consecutive failures; while open at most one probe per interval reaches the origin, cached keys see no errors", async () => {
    // A generous timeout: the down origin answers at once, and on a loaded machine a probe past
    // 300 ms would be a 504 of herdless's own instead of the origin's 503.
    await setup(
      {},
      { breaker: { failureThreshold: 3, probeIntervalMs: 5_000 }, origin: { errorTtlMs: 0, timeoutMs: 3_000 } },
    );
    await get("/cached");
    origin.set({ down: true });
    clock.advance(20_000);
    for (let i = 0; i < 5; i++) await get(`/fail${i}`);
    const before = origin.stats().requests;
    let errorsForCached = 0;
    for (let interval = 0; interval < 6; interval++) {
      const burst = await Promise.all(
        Array.from({ length: 30 }, (_, i) => get(i % 2 ? "/cached" : `/cold${interval}-${i}`)),
      );
      errorsForCached += burst.filter((r, i) => i % 2 === 1 && r.status !== 200).length;
      for (const [i, r] of burst.entries())
        if (i % 2 === 0) expect(r.status === 503 && r.retryAfter !== null).toBe(true);
      clock.advance(5_000);
    }
    expect(errorsForCached).toBe(0);
    expect(origin.stats().requests - before).toBeLessThanOrEqual(6);
    // A successful probe closes it.
    origin.set({ down: false });
    clock.advance(5_000);
    await get("/probe");
    const res = await get("/after");
    expect(res.status).toBe(200);
  });
});
