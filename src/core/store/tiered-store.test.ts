import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { LruStore } from "./lru-store.ts";
import { storeConformance, testEntry } from "./store-conformance.ts";
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
});
