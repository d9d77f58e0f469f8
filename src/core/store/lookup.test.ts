import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { invalidateStored, servableWinner } from "./lookup.ts";
import { LruStore } from "./lru-store.ts";
import { testEntry } from "./store-conformance.ts";

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
