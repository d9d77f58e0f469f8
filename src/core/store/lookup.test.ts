import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import {
  INVALIDATION_MARK_MS,
  invalidatedWhileAsked,
  invalidateStored,
  lookup,
  noteWrite,
  putVaryPointer,
  servableWinner,
  standingAfterWrites,
  writtenWhileAsked,
} from "./lookup.ts";
import { keptSelectors } from "../http/key.ts";
import { LruStore } from "./lru-store.ts";
import { testEntry } from "./store-conformance.ts";
import type { Store } from "./store.ts";

const T0 = 1_700_000_000_000;
const none = { get: () => null };

function store() {
  const clock = new ManualClock(T0);
  return { clock, store: new LruStore({ maxBytes: 1 << 20, clock }) };
}

describe("servableWinner: what a write refused by a newer token may answer with", () => {
  it("the newer entry under the key, when it is a response", async () => {
    const { store: s } = store();
    await s.put(testEntry("page", T0, { token: 7 }));
    expect((await servableWinner(s, "page", "page"))?.token).toBe(7);
  });

  it("never an invalidation's bodiless mark: the writer answers with its own response", async () => {
    const { clock, store: s } = store();
    await s.put(testEntry("page", T0, { token: 7 }));
    clock.advance(1_000);
    await invalidateStored(s, "page", none, clock.now());
    expect((await s.get("page"))?.body.length).toBe(0);
    expect(await servableWinner(s, "page", "page")).toBeUndefined();
  });

  it("an invalidation made by a clock behind the one that stored the copy still hides it: its mark is never the page", async () => {
    const { clock, store: s } = store();
    // Stored by the key's object (or another fleet member) whose clock is 50 ms ahead.
    await s.put(testEntry("page", T0 + 50, { token: 7 }));
    await s.put(testEntry("list", T0 + 50, { token: 7, vary: ["accept-language"], body: new Uint8Array(0) }));
    await s.put(testEntry("list|en", T0 + 50, { token: 7 }));
    clock.advance(10);
    await invalidateStored(s, "page", none, clock.now());
    await invalidateStored(s, "list", none, clock.now());
    expect((await lookup(s, "page", "page", none)).entry).toBeUndefined();
    expect((await lookup(s, "list", "list|en", none)).entry).toBeUndefined();
    expect(await servableWinner(s, "page", "page")).toBeUndefined();
  });

  it("never a Vary pointer, nor a variant stored before the URL's mark", async () => {
    const { clock, store: s } = store();
    await s.put(testEntry("page", T0, { token: 7, vary: ["accept-language"], body: new Uint8Array(0) }));
    await s.put(testEntry("page|en", T0, { token: 7 }));
    expect(await servableWinner(s, "page", "page")).toBeUndefined();
    expect((await servableWinner(s, "page|en", "page"))?.token).toBe(7);
    clock.advance(1_000);
    await invalidateStored(s, "page", none, clock.now());
    expect(await servableWinner(s, "page|en", "page")).toBeUndefined();
  });
});

describe("RFC 9111 §4.4: an answer asked for before a write is never stored after it", () => {
  it("a write this process saw, or heard of (noteWrite), tells a flight writing to that store; another store is not told", async () => {
    const { clock, store: s } = store();
    const other = store().store;
    const askedAt = clock.now();
    clock.advance(1_000);
    await invalidateStored(s, "GET https://a.test/p", none, clock.now());
    expect(writtenWhileAsked(s, "GET https://a.test/p", { requestAt: askedAt })).toBe(true);
    // Asked in the write's own millisecond, it may have been asked before it (as notInvalidated judges a copy stored then).
    expect(writtenWhileAsked(s, "GET https://a.test/p", { requestAt: clock.now() })).toBe(true);
    expect(writtenWhileAsked(s, "GET https://a.test/p", { requestAt: clock.now() + 1 })).toBe(false);
    expect(writtenWhileAsked(other, "GET https://a.test/p", { requestAt: askedAt })).toBe(false);
    noteWrite(other, "GET https://a.test/p", clock.now());
    expect(writtenWhileAsked(other, "GET https://a.test/p", { requestAt: askedAt })).toBe(true);
  });

  it("a URL invalidated with nothing stored keeps a mark no lookup serves, which the next tier's write reads", async () => {
    const { clock, store: s } = store();
    const askedAt = clock.now();
    clock.advance(1_000);
    await invalidateStored(s, "GET https://a.test/p", none, clock.now());
    expect((await lookup(s, "GET https://a.test/p", "GET https://a.test/p", none)).entry).toBeUndefined();
    const fresh = store().store;
    await fresh.put((await s.get("GET https://a.test/p"))!);
    expect(await invalidatedWhileAsked(fresh, "GET https://a.test/p", { requestAt: askedAt })).toBe(true);
    clock.advance(INVALIDATION_MARK_MS);
    expect(await s.get("GET https://a.test/p")).toBeUndefined();
  });
});

describe("RFC 9111 §4.4: a copy read before a write never stands in for an origin answer after it", () => {
  it("a write noted here, or marked in the store by another process, takes it; a later copy, or a store that cannot be read, leaves it", async () => {
    const { clock, store: s } = store();
    const copy = testEntry("GET https://a.test/p", T0);
    await s.put(copy);
    expect(await standingAfterWrites(s, "GET https://a.test/p", [copy])).toEqual([copy]);
    clock.advance(1_000);
    await invalidateStored(s, "GET https://a.test/p", none, clock.now());
    expect(await standingAfterWrites(s, "GET https://a.test/p", [copy])).toEqual([]);
    // The mark alone, as another process left it in a shared store.
    const shared = store().store;
    await shared.put((await s.get("GET https://a.test/p"))!);
    expect(await standingAfterWrites(shared, "GET https://a.test/p", [copy])).toEqual([]);
    const later = testEntry("GET https://a.test/p", clock.now() + 1);
    expect(await standingAfterWrites(shared, "GET https://a.test/p", [later])).toEqual([later]);
    const unreadable = {
      get: () => Promise.reject(new Error("down")),
      put: async () => false,
      delete: async () => false,
    };
    expect(await standingAfterWrites(unreadable, "GET https://a.test/p", [copy])).toEqual([copy]);
  });

  it("judges several copies of the URL (the coordinator's and this edge's) with one read of its mark", async () => {
    const { clock, store: s } = store();
    const older = testEntry("GET https://a.test/p", T0);
    await invalidateStored(s, "GET https://a.test/p", none, T0 + 500);
    const newer = testEntry("GET https://a.test/p", clock.now() + 1_000);
    let reads = 0;
    const counting: Store = {
      get: (key) => (reads++, s.get(key)),
      put: (entry) => s.put(entry),
      delete: (key) => s.delete(key),
    };
    expect(await standingAfterWrites(counting, "GET https://a.test/p", [older, newer])).toEqual([newer]);
    expect(reads).toBe(1);
  });
});

describe("lookup: the selectors a URL's copies keep (key.ts keptSelectors)", () => {
  const app = { get: (name: string) => (name === "origin" ? "https://app.test" : null) };
  const variant = 'page\n[["accept-language",null],["origin","https://app.test"]]';
  const kept = async (s: LruStore, known: string) => keptSelectors((await lookup(s, "page", known, app)).kept, T0);

  it("come from the pointer: implied ones, and named ones while a variant that named them may be stored", async () => {
    const { store: s } = store();
    await s.put(testEntry("page", T0, { vary: ["accept-language", "origin"], body: new Uint8Array(0) }));
    expect(await kept(s, "page")).toEqual(["origin"]);
    expect(await kept(s, variant)).toEqual(["origin"]);
    const named: [string, number][] = [["accept-language", T0 + 1]];
    await s.put(
      testEntry("page", T0, { vary: ["accept-language", "origin"], body: new Uint8Array(0), namedUntil: named }),
    );
    expect(await kept(s, "page")).toEqual(["accept-language", "origin"]);
    expect(await kept(s, variant)).toEqual(["accept-language", "origin"]);
  });

  it("from the variant when its pointer is gone, and none for a URL that varies on nothing", async () => {
    const { store: s } = store();
    await s.put(testEntry(variant, T0, { vary: ["accept-language", "origin"] }));
    expect(await kept(s, variant)).toEqual(["origin"]);
    const named: [string, string][] = [["vary", "Accept-Language"]];
    await s.put(testEntry(variant, T0, { vary: ["accept-language", "origin"], headers: named }));
    expect(await kept(s, variant)).toEqual(["accept-language", "origin"]);
    await s.put(testEntry("plain", T0));
    expect(keptSelectors((await lookup(s, "plain", "plain", app)).kept, T0)).toEqual([]);
  });

  it("the pointer keeps when the URL's variants named a header, across answers that did not", async () => {
    const { store: s } = store();
    const fr = testEntry("page fr", T0, { vary: ["accept-language"], headers: [["vary", "Accept-Language"]] });
    await putVaryPointer(s, fr, "page");
    const bare = testEntry("page none", T0, { vary: ["accept-language"], deleteAt: fr.deleteAt + 5_000 });
    await putVaryPointer(s, bare, "page");
    const pointer = await s.get("page");
    expect(pointer?.namedUntil).toEqual([["accept-language", fr.deleteAt]]);
    expect(pointer?.deleteAt).toBe(bare.deleteAt);
  });
});
