/**
 * The writes a key's object makes after its answer: a failed one (an object reset in that
 * tick, its storage gone) is a lost write, never an unhandled rejection that takes the object's
 * other work down with it. Its lease, written after the guard is asked, and always before the origin is.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { AfterAnswer, WriteBehindLeases } from "../../src/cloudflare/after-answer.ts";
import type { KeyCoordinatorObject } from "../../src/cloudflare/key-coordinator-object.ts";
import { StorageLeaseManager } from "../../src/cloudflare/storage-lease.ts";
import { coordinatorOf, EDGE, edgeEnv } from "./edge-harness.ts";
import { inObject } from "./in-object.ts";
import { testOrigin } from "./test-origin.ts";

describe("writes after the answer", () => {
  it("an async write that fails is logged and the writes after it still run, in order", async () => {
    const kept: Promise<unknown>[] = [];
    const later = new AfterAnswer((work) => kept.push(work));
    const ran: string[] = [];
    later.defer(() => Promise.reject(new Error("Application called abortAllDurableObjects().")));
    later.defer(() => {
      throw new Error("storage gone");
    });
    later.defer(() => ran.push("entry"));
    expect(ran).toEqual([]);
    await Promise.all(kept);
    // One more turn for the failed write's rejection to be handled (vitest fails the run on an unhandled one).
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(ran).toEqual(["entry"]);
  });
});

describe("a lease written after the decision", () => {
  const leaseRows = (state: DurableObjectState) =>
    state.storage.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'herdless_leases'")
      .one().n === 0
      ? []
      : state.storage.sql.exec<{ key: string }>("SELECT key FROM herdless_leases WHERE key <> ''").toArray();

  const tables = (state: DurableObjectState) =>
    state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE name LIKE 'herdless%'")
      .toArray()
      .map((row) => row.name);

  it("is held at once, in storage once flushed, and never taken twice meanwhile", async () => {
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(`wbl-${crypto.randomUUID()}`));
    await runInDurableObject(stub, async (_instance, state) => {
      const clock = new ManualClock(1_000);
      const kept: Promise<unknown>[] = [];
      const later = new AfterAnswer((work) => kept.push(work));
      const leases = new WriteBehindLeases(new StorageLeaseManager(state.storage, clock), later);
      const lease = await leases.acquire("k", 10_000);
      expect(lease).toBeDefined();
      // Not written yet: the call the holder makes next leaves before the lease's commit.
      expect(leaseRows(state)).toEqual([]);
      // Another caller writes what was deferred first, and finds the key held.
      expect(await leases.acquire("k", 10_000)).toBeUndefined();
      expect(leaseRows(state)).toEqual([{ key: "k" }]);
      expect(await leases.release(lease!)).toBe(true);
      await Promise.all(kept);
      expect(leaseRows(state)).toEqual([]);
    });
  });

  it("a lease released before its write was made (no origin was asked under it) is never written", async () => {
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(`wbl-${crypto.randomUUID()}`));
    await runInDurableObject(stub, async (_instance, state) => {
      const clock = new ManualClock(1_000);
      const kept: Promise<unknown>[] = [];
      const later = new AfterAnswer((work) => kept.push(work));
      const inner = new StorageLeaseManager(state.storage, clock);
      const leases = new WriteBehindLeases(inner, later);
      const first = await leases.acquire("k", 10_000);
      // The timer of the writes after the answer does not write a lease: only what needs it in storage does.
      later.defer(() => undefined);
      await Promise.all(kept);
      expect(leaseRows(state)).toEqual([]);
      expect(await leases.release(first!)).toBe(true);
      later.flush();
      expect(inner.current("k")).toBeUndefined();
      expect(tables(state)).toEqual([]);
      // Tokens still only grow, at the same instant too.
      const second = await leases.acquire("k", 10_000);
      expect(second!.token).toBeGreaterThan(first!.token);
    });
  });

  it("the key's object asks the origin only once its lease is in storage", async () => {
    const origin = await testOrigin();
    const testEnv = edgeEnv(origin.url);
    const stub = coordinatorOf(testEnv, "/leased");
    const primary = `GET ${EDGE}/leased`;
    const seen: string[][] = [];
    await inObject(stub, async (instance: KeyCoordinatorObject, state) => {
      const original = globalThis.fetch;
      const spy = vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
        seen.push(leaseRows(state).map((row) => row.key));
        return original(input, init);
      });
      // The timer that writes deferred writes waits until the fill is over: only the fetch may write the lease.
      const held: (() => void)[] = [];
      const setTimer = globalThis.setTimeout;
      const timers = vi
        .spyOn(globalThis, "setTimeout")
        .mockImplementation(((callback: () => void, ms?: number) =>
          ms === 0 ? (held.push(callback), 0) : setTimer(callback, ms)) as typeof setTimeout);
      try {
        await instance.fill({
          primary,
          key: primary,
          url: `${origin.url}/leased`,
          path: "/leased",
          headers: [],
          priority: "foreground",
        });
      } finally {
        spy.mockRestore();
        timers.mockRestore();
        for (const callback of held) callback();
      }
    });
    expect(seen).toEqual([[primary]]);
    expect(await origin.count()).toBe(1);
  });
});
