/**
 * Misses of a page whose answer cannot be shared, on the Worker (core fill/pass-marks.ts, the
 * isolate's marks): once an isolate has seen the origin answer a URL uncacheable, its
 * visitors go to the origin side by side, not one round trip after another, and without a
 * call to the key's Durable Object each; a page that turns cacheable is stored again.
 */
import { describe, expect, it } from "vitest";
import { countingCoordinator, dataCenter, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

describe("misses of a page whose answer cannot be shared (Worker)", () => {
  it("go to the origin side by side once the isolate has seen one such answer", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "private" } });
    const { env, fills } = countingCoordinator(edgeEnv(origin.url));
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, env, undefined, { ownIsolate: true });
    expect((await dc.get("/account")).cacheStatus).toBe("herdless; fwd=uri-miss; fwd-status=200; detail=uncacheable");
    expect(fills()).toBe(1);

    // Five visitors at once: all five at the origin together (one fills, four beside it).
    await origin.set({ mode: "hold" });
    const pending = Promise.all(Array.from({ length: 5 }, () => dc.get("/account")));
    await origin.waitFor({ held: 5, count: 1 + 5 });
    await origin.set({ mode: "up" });
    await origin.release();
    for (const answer of await pending) {
      expect(answer.status).toBe(200);
      expect(answer.cacheStatus).toBe("herdless; fwd=uri-miss; fwd-status=200; detail=uncacheable");
    }
    // Only the fill asked the key's object.
    expect(fills()).toBe(2);

    // The page turns cacheable: the next miss's fill stores it, and the one after is a hit.
    await origin.set({ headers: { "cache-control": "max-age=60" } });
    expect((await dc.get("/account")).cacheStatus).toMatch(/^herdless; fwd=uri-miss; fwd-status=200; ttl=\d+; stored$/);
    expect((await dc.get("/account")).cacheStatus).toMatch(/^herdless; hit/);
    expect(await origin.count()).toBe(7);
  });
});
