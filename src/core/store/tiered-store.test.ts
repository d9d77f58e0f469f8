import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../clock.ts";
import { LruStore } from "./lru-store.ts";
import { storeConformance, testEntry } from "./store-conformance.ts";
import type { Entry } from "../http/entry.ts";
import { TieredStore } from "./tiered-store.ts";

storeConformance("tiered (memory over memory)", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  return {
    clock,
    store: new TieredStore(
      new LruStore({ maxBytes: 1 << 20, clock }),
      async () => new LruStore({ maxBytes: 1 << 26, clock }),
    ),
  };
});

afterEach(() => {
  vi.useRealTimers();
});

describe("tiered store", () => {
  it("serves a memory hit without opening the back store, and fills memory from the back", async () => {
    const clock = new ManualClock(0);
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    await back.put(testEntry("k", 0));
    let opened = 0;
    const front = new LruStore({ maxBytes: 1 << 20, clock });
    const first = new TieredStore(front, async () => (opened++, back));
    expect((await first.get("k"))?.key).toBe("k");
    expect(front.getSync("k")).toBeDefined();
    const second = new TieredStore(front, async () => (opened++, back));
    expect((await second.get("k"))?.key).toBe("k");
    expect(opened).toBe(1);
  });

  it("drops a memory copy the back store refuses to replace (a newer token lives there)", async () => {
    const clock = new ManualClock(0);
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    await back.put(testEntry("k", 0, { token: 9, status: 200 }));
    const front = new LruStore({ maxBytes: 1 << 20, clock });
    await front.put(testEntry("k", 0, { token: 1, status: 500 }));
    const store = new TieredStore(front, async () => back);
    expect(await store.put(testEntry("k", 0, { token: 2, status: 500 }))).toBe(false);
    expect((await store.get("k"))?.status).toBe(200);
  });

  it("writes an entry memory already holds (same key and token) only once", async () => {
    const clock = new ManualClock(0);
    let backPuts = 0;
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    const counted = {
      get: back.get.bind(back),
      delete: back.delete.bind(back),
      put: (e: Entry) => (backPuts++, back.put(e)),
    };
    const store = new TieredStore(new LruStore({ maxBytes: 1 << 20, clock }), async () => counted);
    const entry = testEntry("k", 0, { token: 3 });
    for (let i = 0; i < 5; i++) expect(await store.put({ ...entry })).toBe(true);
    expect(backPuts).toBe(1);
    expect(await store.put(testEntry("k", 0, { token: 4 }))).toBe(true);
    expect(backPuts).toBe(2);
  });

  it("with writeBehind, put resolves from memory and the back write runs as background work", async () => {
    const clock = new ManualClock(0);
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    const work: Promise<unknown>[] = [];
    const store = new TieredStore(new LruStore({ maxBytes: 1 << 20, clock }), async () => back, {
      writeBehind: (write) => work.push(write()),
    });
    expect(await store.put(testEntry("k", 0, { token: 1 }))).toBe(true);
    expect((await store.get("k"))?.token).toBe(1);
    expect(work).toHaveLength(1);
    await Promise.all(work);
    expect((await back.get("k"))?.token).toBe(1);
  });

  it("with writeBehind, an entry the back store refuses (a newer one is there) leaves memory again", async () => {
    const clock = new ManualClock(0);
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    await back.put(testEntry("k", 0, { token: 9, status: 200 }));
    const front = new LruStore({ maxBytes: 1 << 20, clock });
    const work: Promise<unknown>[] = [];
    const store = new TieredStore(front, async () => back, { writeBehind: (write) => work.push(write()) });
    expect(await store.put(testEntry("k", 0, { token: 2, status: 500 }))).toBe(true);
    await Promise.all(work);
    expect(front.getSync("k")).toBeUndefined();
    expect((await store.get("k"))?.status).toBe(200);
  });

  it("with writes, the back writes of one key run in the order handed over; one that hangs holds the next for 2 s at most", async () => {
    vi.useFakeTimers();
    const order: string[] = [];
    let release = () => {};
    const slow = new Promise<void>((resolve) => (release = resolve));
    const { back, store, work } = writeBehindStore(async (e, back) => {
      order.push(`start ${e.token}`);
      if (e.token === 1) await slow;
      // A write that never ends (a request the runtime ended with its write still on its way).
      if (e.token === 3) await new Promise(() => {});
      order.push(`end ${e.token}`);
      return back.put(e);
    });
    await store.put(testEntry("k", 0, { token: 1 }));
    await store.put(testEntry("k", 0, { token: 2 }));
    await vi.advanceTimersByTimeAsync(10);
    expect(order).toEqual(["start 1"]);
    release();
    await Promise.all(work);
    expect(order).toEqual(["start 1", "end 1", "start 2", "end 2"]);
    await store.put(testEntry("k", 0, { token: 3 }));
    await store.put(testEntry("k", 0, { token: 4 }));
    await vi.advanceTimersByTimeAsync(1_999);
    expect(order.slice(4)).toEqual(["start 3"]);
    await vi.advanceTimersByTimeAsync(1);
    await work[3];
    expect(order.slice(4)).toEqual(["start 3", "start 4", "end 4"]);
    expect((await back.get("k"))?.token).toBe(4);
  });

  it("with writes, a delete waits for the key's write on its way: the copy written before it never outlives it", async () => {
    let release = () => {};
    const slow = new Promise<void>((resolve) => (release = resolve));
    const { back, store, work } = writeBehindStore(async (e, back) => {
      await slow;
      return back.put(e);
    });
    await store.put(testEntry("k", 0, { token: 1 }));
    const deleted = store.delete("k");
    // Turns enough for a delete that does not wait to reach the back store before the write lands.
    for (let i = 0; i < 20; i++) await Promise.resolve();
    release();
    await Promise.all([deleted, ...work]);
    expect(await back.get("k")).toBeUndefined();
    expect(await store.get("k")).toBeUndefined();
  });

  it("with sharedReads, concurrent misses of one key read the back store once", async () => {
    const clock = new ManualClock(0);
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    await back.put(testEntry("k", 0, { token: 5 }));
    let backGets = 0;
    const counted = {
      put: back.put.bind(back),
      delete: back.delete.bind(back),
      get: (k: string) => (backGets++, back.get(k)),
    };
    const running = new Map<string, Promise<Entry | undefined>>();
    const front = new LruStore({ maxBytes: 1 << 20, clock });
    // One store per request, as the Worker builds them, sharing the memory tier and the reads.
    const stores = Array.from(
      { length: 50 },
      () => new TieredStore(front, async () => counted, { sharedReads: { running, joinTimeoutMs: 1_000 } }),
    );
    const found = await Promise.all(stores.map((store) => store.get("k")));
    expect(found.map((entry) => entry?.token)).toEqual(Array.from({ length: 50 }, () => 5));
    expect(backGets).toBe(1);
    expect(running.size).toBe(0);
  });

  it("a request whose wait on another's slow read ran out joins the fetch that began meanwhile, without reading again", async () => {
    const clock = new ManualClock(0);
    let backGets = 0;
    const hung = {
      put: async () => true,
      delete: async () => true,
      get: () => (backGets++, new Promise<Entry | undefined>(() => undefined)),
    };
    const running = new Map<string, Promise<Entry | undefined>>();
    const front = new LruStore({ maxBytes: 1 << 20, clock });
    let fetching = false;
    const options = { sharedReads: { running, joinTimeoutMs: 1 }, fetching: () => fetching };
    void new TieredStore(front, async () => hung, options).get("k");
    const waiter = new TieredStore(front, async () => hung, options).get("k");
    // The first request's read is still out; its fetch of the key begins.
    fetching = true;
    expect(await waiter).toBeUndefined();
    expect(backGets).toBe(1);
  });

  it("a memory miss of a key another request is fetching does not read the back store; memory still answers", async () => {
    const clock = new ManualClock(0);
    const back = new LruStore({ maxBytes: 1 << 26, clock });
    await back.put(testEntry("k", 0, { token: 5 }));
    await back.put(testEntry("other", 0, { token: 6 }));
    let backGets = 0;
    const counted = {
      put: back.put.bind(back),
      delete: back.delete.bind(back),
      get: (k: string) => (backGets++, back.get(k)),
    };
    const front = new LruStore({ maxBytes: 1 << 20, clock });
    const store = new TieredStore(front, async () => counted, { fetching: (key) => key === "k" });
    expect(await store.get("k")).toBeUndefined();
    expect(backGets).toBe(0);
    expect((await store.get("other"))?.token).toBe(6);
    expect(backGets).toBe(1);
    await front.put(testEntry("k", 0, { token: 7 }));
    expect((await store.get("k"))?.token).toBe(7);
    expect(backGets).toBe(1);
  });
});

/**
 * A TieredStore writing behind its answers (`work` holds the writes), with shared write
 * ordering, over an LRU back store whose puts go through `put`.
 */
function writeBehindStore(put: (entry: Entry, back: LruStore) => Promise<boolean>) {
  const clock = new ManualClock(0);
  const back = new LruStore({ maxBytes: 1 << 26, clock });
  const gated = { get: back.get.bind(back), delete: back.delete.bind(back), put: (e: Entry) => put(e, back) };
  const work: Promise<unknown>[] = [];
  const store = new TieredStore(new LruStore({ maxBytes: 1 << 20, clock }), async () => gated, {
    writeBehind: (write) => void work.push(write()),
    writes: new Map(),
  });
  return { back, store, work };
}
