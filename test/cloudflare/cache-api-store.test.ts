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
      status: 404,
      headers: [
        ["vary", "*"],
        ["content-type", "text/plain"],
      ],
      deleteAt: now + 90_500,
    });
    // Vary: * would make cache.put throw if it were a real header; the wire's status is not the entry's.
    expect(await store.put(entry)).toBe(true);
    const raw = await cache.match(cacheUrlFor(entry.key));
    expect(raw?.status).toBe(200);
    expect(raw?.headers.get("cache-control")).toBe("max-age=91");
    expect(raw?.headers.get("vary")).toBeNull();
    expect(raw?.headers.get(ENTRY_META_HEADER)).toMatch(/^[A-Za-z0-9+/=]+$/);
    await raw?.arrayBuffer();
    expect((await store.get(entry.key))?.status).toBe(404);
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

describe("CacheApiStore: RFC 9111 §4.4 marks", () => {
  it("a write's mark made from an older copy marks the newer copy stored before the write; not one stored after it", async () => {
    const clock = start();
    const store = new CacheApiStore(await caches.open(`marks-${crypto.randomUUID()}`), clock);
    const now = clock.now();
    const older = testEntry("k", now - 2_000, { token: 3 });
    const newer = testEntry("k", now - 1_000, { token: 4, etag: '"v2"' });
    expect(await store.put(newer)).toBe(true);
    // The mark of a write at `now`, made from the copy an isolate's memory held.
    const mark = { ...older, body: new Uint8Array(0), invalidatedAt: now, deleteAt: now + 600_000 };
    expect(await store.put(mark)).toBe(true);
    const marked = await store.get("k");
    expect(marked).toMatchObject({ token: 4, etag: '"v2"', invalidatedAt: now, deleteAt: now + 600_000 });
    expect(marked?.body.byteLength).toBe(0);
    // A copy stored after the write stands; an older copy is still refused.
    const after = testEntry("k", now + 1, { token: 5 });
    expect(await store.put(after)).toBe(true);
    expect(await store.put({ ...mark, invalidatedAt: now })).toBe(false);
    expect(await store.put(older)).toBe(false);
    expect((await store.get("k"))?.token).toBe(5);
  });

  it("a write's mark is never undone by a late write of the copy it marks (another isolate's, which reads the mark first)", async () => {
    const clock = start();
    const store = new CacheApiStore(await caches.open(`late-${crypto.randomUUID()}`), clock);
    const now = clock.now();
    const copy = testEntry("k", now - 1_000, { token: 7 });
    // The POST's mark, made from the copy (same token) and written first.
    const mark = { ...copy, body: new Uint8Array(0), invalidatedAt: now, deleteAt: now + 600_000 };
    expect(await store.put(mark)).toBe(true);
    expect(await store.put(copy)).toBe(false);
    expect(await store.get("k")).toMatchObject({ token: 7, invalidatedAt: now });
    // A copy asked of the origin after the write is no copy of the old page: it stands.
    const after = testEntry("k", now + 1, { token: 7 });
    expect(await store.put(after)).toBe(true);
    expect((await store.get("k"))?.invalidatedAt).toBeUndefined();
  });
});
