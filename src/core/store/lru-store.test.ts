import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { entrySize } from "../http/entry.ts";
import { isHerdlessError } from "../errors.ts";
import { storeConformance, testEntry } from "./store-conformance.ts";
import { LruStore } from "./lru-store.ts";

storeConformance("lru", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  return { clock, store: new LruStore({ maxBytes: 64 * 1024 * 1024, clock }) };
});

const T0 = 1_700_000_000_000;

/** An entry whose charged size is exactly `bytes`, so budgets in tests are exact. */
function sized(key: string, bytes: number, clock: ManualClock, token = 1) {
  const probe = testEntry(key, clock.now(), { body: new Uint8Array(0), token });
  const body = new Uint8Array(bytes - entrySize(probe));
  return testEntry(key, clock.now(), { body, token });
}

describe("LruStore byte bound", () => {
  it("evicts least recently used entries by bytes, not by count", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("a", 10_000, clock));
    await lru.put(sized("b", 10_000, clock));
    await lru.put(sized("c", 10_000, clock));
    expect(lru.bytes).toBe(30_000);
    expect(lru.evictions).toBe(0);
    // One 20,000-byte entry pushes out the two oldest 10,000-byte ones.
    await lru.put(sized("big", 20_000, clock));
    expect(lru.getSync("a")).toBeUndefined();
    expect(lru.getSync("b")).toBeUndefined();
    expect(lru.getSync("c")).toBeDefined();
    expect(lru.getSync("big")).toBeDefined();
    expect(lru.size).toBe(2);
    expect(lru.bytes).toBe(30_000);
    expect(lru.evictions).toBe(2);
  });

  it("spares an invalidation's mark over a Vary'd URL while anything else can go", async () => {
    // The mark hides variants the store cannot list; read before them on every lookup, it is
    // older than they are, and evicting it first would let them be served again.
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    const pointer = sized("page", 10_000, clock);
    await lru.put({ ...pointer, vary: ["accept-language"], invalidatedAt: clock.now() });
    await lru.put(sized("page|en", 10_000, clock));
    await lru.put(sized("other", 10_000, clock));
    await lru.put(sized("more", 10_000, clock));
    expect(lru.getSync("page")?.invalidatedAt).toBe(T0);
    expect(lru.getSync("page|en")).toBeUndefined();
    // A mark with nothing else left to evict goes too: the budget holds.
    const marks = new LruStore({ maxBytes: 20_000, clock });
    for (const key of ["m1", "m2", "m3"])
      await marks.put({ ...sized(key, 10_000, clock), vary: ["accept"], invalidatedAt: clock.now() });
    expect(marks.bytes).toBeLessThanOrEqual(20_000);
    expect(marks.getSync("m1")).toBeUndefined();
  });

  it("keeps recency right when the newest key is read again, deleted, or re-read after another read", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("a", 10_000, clock));
    await lru.put(sized("b", 10_000, clock));
    await lru.put(sized("c", 10_000, clock));
    // c is the newest: reading it again changes nothing; reading a makes a the newest.
    lru.getSync("c");
    lru.getSync("c");
    lru.getSync("a");
    await lru.delete("a");
    await lru.put(sized("d", 10_000, clock));
    lru.getSync("b");
    // Order now (oldest first): c, d, b. One more entry pushes out c alone.
    await lru.put(sized("e", 10_000, clock));
    expect(lru.getSync("c")).toBeUndefined();
    expect(lru.getSync("d")).toBeDefined();
    expect(lru.getSync("b")).toBeDefined();
    expect(lru.getSync("e")).toBeDefined();
  });

  it("refreshes recency on get, so a read entry outlives older unread ones", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("a", 10_000, clock));
    await lru.put(sized("b", 10_000, clock));
    await lru.put(sized("c", 10_000, clock));
    expect(await lru.get("a")).toBeDefined();
    await lru.put(sized("d", 10_000, clock));
    expect(lru.getSync("b")).toBeUndefined();
    expect(lru.getSync("a")).toBeDefined();
    expect(lru.getSync("c")).toBeDefined();
    expect(lru.getSync("d")).toBeDefined();
  });

  it("refuses an entry larger than the whole budget and drops the older one it would replace", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("keep", 10_000, clock));
    await lru.put(sized("k", 10_000, clock, 1));
    expect(await lru.put(sized("k", 30_001, clock, 2))).toBe(false);
    expect(lru.getSync("k")).toBeUndefined();
    expect(lru.getSync("keep")).toBeDefined();
    expect(lru.bytes).toBe(10_000);
    expect(lru.evictions).toBe(0);
    expect(await lru.put(sized("exact", 20_000, clock))).toBe(true);
  });

  it("charges the new size when an entry is replaced", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("k", 10_000, clock));
    await lru.put(sized("k", 25000, clock));
    expect(lru.bytes).toBe(25000);
    expect(lru.size).toBe(1);
    await lru.delete("k");
    expect(lru.bytes).toBe(0);
  });

  it("drops expired entries on access and releases their bytes without counting an eviction", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("k", 10_000, clock));
    clock.advance(60_000);
    expect(lru.getSync("k")).toBeUndefined();
    expect(lru.size).toBe(0);
    expect(lru.bytes).toBe(0);
    expect(lru.evictions).toBe(0);
  });

  it("lets a lower token replace an expired entry", async () => {
    const clock = new ManualClock(T0);
    const lru = new LruStore({ maxBytes: 30_000, clock });
    await lru.put(sized("k", 10_000, clock, 9));
    clock.advance(60_000);
    expect(await lru.put(sized("k", 10_000, clock, 2))).toBe(true);
    expect(lru.getSync("k")?.token).toBe(2);
  });

  it("checks maxBytes when built, naming the field", () => {
    for (const maxBytes of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      let caught: unknown;
      try {
        new LruStore({ maxBytes });
      } catch (error) {
        caught = error;
      }
      expect(isHerdlessError(caught, "CONFIG_INVALID")).toBe(true);
      expect((caught as Error).message).toContain("maxBytes must be a positive number of bytes");
    }
  });
});

describe("LruStore.claimReread: a copy read again from the store other processes write", () => {
  it("is due once per interval since it was put, and a put or a refused older put confirms it", async () => {
    const clock = new ManualClock(0);
    const lru = new LruStore({ maxBytes: 1 << 20, clock });
    expect(lru.claimReread("k", 1_000, 0)).toBeUndefined();
    await lru.put(testEntry("k", 0, { token: 7 }));
    expect(lru.claimReread("k", 1_000, 999)).toBeUndefined();
    // Of the requests that ask once it is due, one reads again.
    expect(lru.claimReread("k", 1_000, 1_000)?.token).toBe(7);
    expect(lru.claimReread("k", 1_000, 1_000)).toBeUndefined();
    expect(lru.claimReread("k", 1_000, 1_999)).toBeUndefined();
    // The read found an older copy: memory's stays and counts as confirmed.
    clock.set(2_500);
    expect(await lru.put(testEntry("k", 0, { token: 6 }))).toBe(false);
    expect(lru.getSync("k")?.token).toBe(7);
    expect(lru.claimReread("k", 1_000, 3_499)).toBeUndefined();
    expect(lru.claimReread("k", 1_000, 3_500)).toBeDefined();
  });
});

describe("LruStore.putReread: what a re-read found never goes over a newer write of this process", () => {
  it("a write while the read ran (a POST's mark, a drop) stands; a mark that covers the held copy replaces it whatever its token", async () => {
    const clock = new ManualClock(0);
    const lru = new LruStore({ maxBytes: 1 << 20, clock });
    const copy = testEntry("k", 0, { token: 7 });
    await lru.put(copy);
    clock.set(1_000);
    const held = lru.claimReread("k", 1_000, 1_000)!;
    // This process's POST marks the copy; the read, begun before it, brings the copy back.
    const mark = { ...copy, body: new Uint8Array(0), invalidatedAt: 1_000 };
    await lru.put(mark);
    expect(await lru.putReread(copy, held)).toBe(false);
    expect(lru.getSync("k")?.invalidatedAt).toBe(1_000);
    // Dropped meanwhile: not brought back.
    await lru.delete("k");
    expect(await lru.putReread(copy, held)).toBe(false);
    expect(lru.getSync("k")).toBeUndefined();
    // Another process's mark made where the copy was gone (token 0) covers memory's copy.
    await lru.put(copy);
    const again = lru.claimReread("k", 1_000, 2_000)!;
    const markOfNothing = testEntry("k", 1_500, { token: 0, body: new Uint8Array(0), invalidatedAt: 1_500 });
    expect(await lru.putReread(markOfNothing, again)).toBe(true);
    expect(lru.getSync("k")?.invalidatedAt).toBe(1_500);
    // An older copy read back is still refused.
    await lru.put(copy);
    const third = lru.claimReread("k", 1_000, 3_000)!;
    expect(await lru.putReread(testEntry("k", 0, { token: 6 }), third)).toBe(false);
    expect(lru.getSync("k")?.token).toBe(7);
  });
});
