import { describe, expect, it, beforeEach, afterEach } from "vitest";
import type { ManualClock } from "../clock.ts";
import { DEFAULT_MAX_ENTRY_BYTES } from "../config/fields.ts";
import type { Entry } from "../http/entry.ts";
import { ENTRY_FORMAT_VERSION } from "../http/entry.ts";
import type { Store } from "./store.ts";

export interface StoreHarness {
  store: Store;
  /** The clock the store was built with; the suite moves it. */
  clock: ManualClock;
  cleanup?: () => Promise<void>;
}

/** A minimal valid entry for store tests; instants relative to `now`. */
export function testEntry(key: string, now: number, overrides: Partial<Entry> = {}): Entry {
  return {
    v: ENTRY_FORMAT_VERSION,
    key,
    url: `https://example.test/${encodeURIComponent(key)}`,
    status: 200,
    headers: [
      ["content-type", "text/plain"],
      ["etag", '"v1"'],
    ],
    body: new TextEncoder().encode(`body of ${key}`),
    requestAt: now,
    storedAt: now,
    initialAgeMs: 0,
    staleAt: now + 10_000,
    swrUntil: now + 20_000,
    sieUntil: now + 30_000,
    deleteAt: now + 60_000,
    etag: '"v1"',
    vary: [],
    mustRevalidate: false,
    token: 1,
    tags: [],
    negative: false,
    ...overrides,
  };
}

/**
 * The one conformance suite every {@link Store} passes (memory, LRU, Redis, Cache API,
 * Durable Object). `setup` builds a fresh, empty store around a manual clock.
 *
 * @example
 * storeConformance("lru", async () => { const clock = new ManualClock(1_000); return { clock, store: new LruStore({ maxBytes: 1 << 20, clock }) }; });
 */
export function storeConformance(name: string, setup: () => Promise<StoreHarness>): void {
  describe(`store conformance: ${name}`, () => {
    let h: StoreHarness;
    beforeEach(async () => {
      h = await setup();
    });
    afterEach(async () => {
      await h.cleanup?.();
    });

    const harness = () => h;
    roundTripCases(harness);
    lifetimeAndFencingCases(harness);
    largeBodyCases(harness);
  });
}

/** What goes in comes out: every field, any body, any key, each key apart. */
function roundTripCases(harness: () => StoreHarness): void {
  it("returns undefined for a key never stored", async () => {
    const h = harness();
    expect(await h.store.get("absent")).toBeUndefined();
  });

  it("round-trips every field, body bytes included", async () => {
    const h = harness();
    const body = new Uint8Array(4096).map((_, i) => i % 251);
    const entry = testEntry("k1", h.clock.now(), {
      body,
      headers: [
        ["content-type", "application/octet-stream"],
        ["x-multi", "a, b"],
      ],
      lastModified: "Tue, 01 Jan 2030 00:00:00 GMT",
      vary: ["accept-language"],
      tags: ["t1", "t2"],
      token: 7,
      // An unconfirmed error's mark (asked-by.ts): lost, it would answer every request.
      askedBy: "00112233445566778899aabbccddeeff",
    });
    expect(await h.store.put(entry)).toBe(true);
    const got = await h.store.get("k1");
    expect(got).toBeDefined();
    expect({ ...got, body: undefined }).toEqual({ ...entry, body: undefined });
    expect(Array.from(got!.body)).toEqual(Array.from(body));
  });

  it("stores an empty body", async () => {
    const h = harness();
    await h.store.put(testEntry("empty", h.clock.now(), { body: new Uint8Array(0), status: 204 }));
    const got = await h.store.get("empty");
    expect(got?.status).toBe(204);
    expect(got?.body.byteLength).toBe(0);
  });

  it("keeps keys apart", async () => {
    const h = harness();
    await h.store.put(testEntry("a", h.clock.now()));
    await h.store.put(testEntry("b", h.clock.now(), { status: 404 }));
    expect((await h.store.get("a"))?.status).toBe(200);
    expect((await h.store.get("b"))?.status).toBe(404);
  });

  it("handles keys with any characters", async () => {
    const h = harness();
    const key = "GET https://exämple.test/a b?q=1&r=é|accept-language=fr";
    await h.store.put(testEntry(key, h.clock.now()));
    expect((await h.store.get(key))?.key).toBe(key);
  });
}

/** deleteAt is obeyed to the millisecond; a lower fencing token never overwrites; a delete resets the key. */
function lifetimeAndFencingCases(harness: () => StoreHarness): void {
  it("serves an entry until deleteAt and never after", async () => {
    const h = harness();
    const now = h.clock.now();
    await h.store.put(testEntry("ttl", now, { deleteAt: now + 5_000 }));
    h.clock.advance(4_999);
    expect(await h.store.get("ttl")).toBeDefined();
    h.clock.advance(1);
    expect(await h.store.get("ttl")).toBeUndefined();
  });

  it("replaces an entry with one of an equal or higher token", async () => {
    const h = harness();
    const now = h.clock.now();
    await h.store.put(testEntry("r", now, { token: 3, status: 200 }));
    expect(await h.store.put(testEntry("r", now, { token: 3, status: 201 }))).toBe(true);
    expect(await h.store.put(testEntry("r", now, { token: 4, status: 202 }))).toBe(true);
    expect((await h.store.get("r"))?.status).toBe(202);
  });

  it("never lets a late writer with an older token overwrite a newer entry", async () => {
    const h = harness();
    const now = h.clock.now();
    await h.store.put(testEntry("f", now, { token: 5, status: 200 }));
    expect(await h.store.put(testEntry("f", now, { token: 4, status: 500 }))).toBe(false);
    expect((await h.store.get("f"))?.status).toBe(200);
  });

  it("deletes, and reports whether something was removed", async () => {
    const h = harness();
    await h.store.put(testEntry("d", h.clock.now()));
    expect(await h.store.delete("d")).toBe(true);
    expect(await h.store.get("d")).toBeUndefined();
    expect(await h.store.delete("d")).toBe(false);
  });

  it("accepts an older token after a delete (purge resets the key)", async () => {
    const h = harness();
    const now = h.clock.now();
    await h.store.put(testEntry("p", now, { token: 9 }));
    await h.store.delete("p");
    expect(await h.store.put(testEntry("p", now, { token: 2 }))).toBe(true);
    expect((await h.store.get("p"))?.token).toBe(2);
  });
}

/** The default cache.maxEntryBytes, byte for byte, including a replacement by a smaller body. */
function largeBodyCases(harness: () => StoreHarness): void {
  it("round-trips a body of the default cache.maxEntryBytes (25 MiB) byte for byte, and replaces it", async () => {
    const h = harness();
    const body = patterned(DEFAULT_MAX_ENTRY_BYTES, 7);
    expect(await h.store.put(testEntry("large", h.clock.now(), { body, token: 1 }))).toBe(true);
    const got = await h.store.get("large");
    expect(got?.body.byteLength).toBe(body.byteLength);
    expect(firstDifference(got!.body, body)).toBe(-1);
    // A smaller body replacing a large one leaves nothing of the old one behind.
    const small = patterned(3_000_000, 11);
    expect(await h.store.put(testEntry("large", h.clock.now(), { body: small, token: 2 }))).toBe(true);
    const replaced = await h.store.get("large");
    expect(replaced?.body.byteLength).toBe(small.byteLength);
    expect(firstDifference(replaced!.body, small)).toBe(-1);
    expect(await h.store.delete("large")).toBe(true);
    expect(await h.store.get("large")).toBeUndefined();
  });
}

/** Bytes that differ at every offset for a while, so a misplaced chunk cannot compare equal. */
function patterned(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * seed + (i >>> 16)) & 0xff;
  return bytes;
}

/** The first offset where `a` and `b` differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.byteLength !== b.byteLength) return Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return i;
  return -1;
}
