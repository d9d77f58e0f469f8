import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { storeConformance, testEntry } from "../../src/core/store/store-conformance.ts";
import { CacheApiStore, cacheUrlFor, ENTRY_META_HEADER } from "../../src/cloudflare/cache-api-store.ts";

// Real epoch time: workerd's local cache expires on the wall clock, so a ManualClock near
// 1970 would make every max-age look enormous but harmless; near now keeps it realistic.
const start = () => new ManualClock(Date.now());

storeConformance("Cache API", async () => {
  const clock = start();
  // A fresh named cache per test: named caches stand in for separate data centers.
  const cache = await caches.open(`conformance-${crypto.randomUUID()}`);
  return { clock, store: new CacheApiStore(cache, clock) };
});

describe("CacheApiStore on the wire", () => {
  it("stores metadata in one header and a physical TTL of the time left until deleteAt", async () => {
    const clock = start();
    const cache = await caches.open(`wire-${crypto.randomUUID()}`);
    const store = new CacheApiStore(cache, clock);
    const now = clock.now();
    const entry = testEntry("GET https://exämple.test/é", now, {
      status: 206,
      headers: [
        ["vary", "*"],
        ["content-type", "text/plain"],
      ],
      deleteAt: now + 90_500,
    });
    // 206 and Vary: * would make cache.put throw if they were real headers.
    expect(await store.put(entry)).toBe(true);
    const raw = await cache.match(cacheUrlFor(entry.key));
    expect(raw?.status).toBe(200);
    expect(raw?.headers.get("cache-control")).toBe("max-age=91");
    expect(raw?.headers.get("vary")).toBeNull();
    expect(raw?.headers.get(ENTRY_META_HEADER)).toMatch(/^[A-Za-z0-9+/=]+$/);
    await raw?.arrayBuffer();
    expect((await store.get(entry.key))?.status).toBe(206);
  });

  it("keeps named caches apart, like two data centers", async () => {
    const clock = start();
    const a = new CacheApiStore(await caches.open(`dc-a-${crypto.randomUUID()}`), clock);
    const b = new CacheApiStore(await caches.open(`dc-b-${crypto.randomUUID()}`), clock);
    await a.put(testEntry("k", clock.now()));
    expect(await a.get("k")).toBeDefined();
    expect(await b.get("k")).toBeUndefined();
  });

  it("does not write an entry already past deleteAt", async () => {
    const clock = start();
    const store = new CacheApiStore(await caches.open(`dead-${crypto.randomUUID()}`), clock);
    expect(await store.put(testEntry("dead", clock.now(), { deleteAt: clock.now() }))).toBe(false);
    expect(await store.get("dead")).toBeUndefined();
  });

  it("ignores a cached response that is not a herdless entry", async () => {
    const clock = start();
    const cache = await caches.open(`foreign-${crypto.randomUUID()}`);
    await cache.put(cacheUrlFor("x"), new Response("not ours", { headers: { "cache-control": "max-age=60" } }));
    const store = new CacheApiStore(cache, clock);
    expect(await store.get("x")).toBeUndefined();
    expect(await store.put(testEntry("x", clock.now(), { token: 1 }))).toBe(true);
  });
});
