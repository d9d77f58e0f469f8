import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ManualClock } from "../clock.ts";
import { BACKOFF_FORMAT_VERSION, type BackoffRecord, type BackoffStore } from "./key-backoff.ts";

export interface BackoffStoreHarness {
  store: BackoffStore;
  /** The clock the store was built with; the suite moves it. */
  clock: ManualClock;
  cleanup?: () => Promise<void>;
}

/**
 * The contract every {@link BackoffStore} keeps (memory, Durable Object storage, Redis): a
 * record comes back as written until its `forgetAt`, never after; keys never collide.
 *
 * @example
 * backoffStoreConformance("memory", async () => { const clock = new ManualClock(0); return { clock, store: new MemoryBackoffStore(clock) }; });
 */
export function backoffStoreConformance(name: string, make: () => Promise<BackoffStoreHarness>): void {
  describe(`BackoffStore conformance: ${name}`, () => {
    let h: BackoffStoreHarness;
    beforeEach(async () => {
      h = await make();
    });
    afterEach(async () => {
      await h.cleanup?.();
    });
    const record = (failures: number, untilIn = 1_000): BackoffRecord => {
      const until = h.clock.now() + untilIn;
      return { v: BACKOFF_FORMAT_VERSION, failures, until, forgetAt: until + 60_000 };
    };

    it("returns what was set, the latest write winning, until deleted", async () => {
      expect(await h.store.get("k")).toBeUndefined();
      await h.store.set("k", record(1));
      expect(await h.store.get("k")).toEqual(record(1));
      await h.store.set("k", record(2, 2_000));
      expect(await h.store.get("k")).toEqual(record(2, 2_000));
      // When the last sick call was (a later breaker close cuts the backoff short) is kept too.
      const failed = { ...record(3, 4_000), failedAt: h.clock.now() };
      await h.store.set("k", failed);
      expect(await h.store.get("k")).toEqual(failed);
      // So is the one request a run's sick calls all came from (it is backed off alone).
      const alone = { ...failed, askedBy: "00112233445566778899aabbccddeeff" };
      await h.store.set("k", alone);
      expect(await h.store.get("k")).toEqual(alone);
      await h.store.set("k", failed);
      expect(await h.store.get("k")).toEqual(failed);
      await h.store.delete("k");
      expect(await h.store.get("k")).toBeUndefined();
      await h.store.delete("never-set");
    });

    it("keeps a record past its backoff, never at or after its forgetAt", async () => {
      const kept = record(3);
      await h.store.set("k", kept);
      h.clock.set(kept.until + 1);
      expect(await h.store.get("k")).toEqual(kept);
      h.clock.set(kept.forgetAt);
      expect(await h.store.get("k")).toBeUndefined();
    });

    it("keeps keys apart, whatever characters they hold", async () => {
      const keys = ["GET https://a.test/x", "GET https://a.test/x}", "{GET https://a.test/x", "k\u0000v", "ключ"];
      for (const [i, key] of keys.entries()) await h.store.set(key, record(i + 1));
      for (const [i, key] of keys.entries()) expect((await h.store.get(key))?.failures).toBe(i + 1);
    });
  });
}
