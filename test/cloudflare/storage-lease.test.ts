import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { StorageLeaseManager } from "../../src/cloudflare/storage-lease.ts";

const T0 = 1_000;

/** Runs `fn` inside a fresh-or-named coordinator object with a lease manager on its storage. */
function inObject<T>(name: string, clock: ManualClock, fn: (leases: StorageLeaseManager) => Promise<T>): Promise<T> {
  const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(name));
  return runInDurableObject(stub, (_instance, state) => fn(new StorageLeaseManager(state.storage, clock)));
}

const fresh = () => `leases-${crypto.randomUUID()}`;

describe("StorageLeaseManager", () => {
  it("acquires, refuses a second holder, extends and releases", async () => {
    const clock = new ManualClock(T0);
    await inObject(fresh(), clock, async (leases) => {
      const lease = await leases.acquire("k", 10_000, "edge-a");
      expect(lease).toMatchObject({ key: "k", expiresAt: T0 + 10_000 });
      expect(leases.current("k")).toEqual({ owner: "edge-a", token: lease!.token, expiresAt: T0 + 10_000 });
      expect(await leases.acquire("k", 10_000)).toBeUndefined();
      clock.advance(5_000);
      expect(await leases.extend(lease!, 20_000)).toBe(true);
      expect(lease!.expiresAt).toBe(T0 + 25_000);
      expect(await leases.release(lease!)).toBe(true);
      expect(leases.current("k")).toBeUndefined();
      expect(await leases.acquire("k", 10_000)).toBeDefined();
    });
  });

  it("keeps nothing in storage once its key went quiet, and tokens still only grow", async () => {
    const clock = new ManualClock(T0);
    const name = fresh();
    const first = await inObject(name, clock, async (leases) => {
      const lease = await leases.acquire("k", 10_000);
      clock.advance(1);
      await leases.release(lease!);
      return lease!;
    });
    const rows = await runInDurableObject(env.COORDINATOR.get(env.COORDINATOR.idFromName(name)), (_i, state) => [
      ...state.storage.sql.exec("SELECT key FROM herdless_leases"),
      ...state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'herdless_lease_counter'"),
    ]);
    expect(rows).toEqual([]);
    const next = await inObject(name, clock, (leases) => leases.acquire("k", 10_000));
    expect(next!.token).toBeGreaterThan(first.token);
  });

  it("makes one table for a new key's lease and its token counter", async () => {
    const clock = new ManualClock(T0);
    const name = fresh();
    await inObject(name, clock, (leases) => leases.acquire("k", 10_000));
    const tables = await runInDurableObject(env.COORDINATOR.get(env.COORDINATOR.idFromName(name)), (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'herdless_lease%'")
        .toArray()
        .map((row) => row.name),
    );
    expect(tables).toEqual(["herdless_leases"]);
  });

  it("keeps counting above the counter table of an earlier version, then forgets it", async () => {
    const clock = new ManualClock(T0);
    const name = fresh();
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(name));
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(
        "CREATE TABLE herdless_lease_counter (id INTEGER PRIMARY KEY CHECK (id = 1), last_token INTEGER NOT NULL)",
      );
      state.storage.sql.exec("INSERT INTO herdless_lease_counter (id, last_token) VALUES (1, ?)", T0 + 500);
    });
    const lease = await inObject(name, clock, (leases) => leases.acquire("k", 10_000));
    expect(lease!.token).toBe(T0 + 501);
    clock.advance(1_000);
    await inObject(name, clock, (leases) => leases.release(lease!));
    const left = await runInDurableObject(stub, (_instance, state) => [
      ...state.storage.sql.exec("SELECT key FROM herdless_leases"),
      ...state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'herdless_lease_counter'"),
    ]);
    expect(left).toEqual([]);
  });

  it("refuses an empty key, the counter's own", async () => {
    await inObject(fresh(), new ManualClock(T0), async (leases) => {
      await expect(leases.acquire("", 1_000)).rejects.toThrow(/lease key must not be empty/);
    });
  });

  it("keeps keys apart", async () => {
    const clock = new ManualClock(T0);
    await inObject(fresh(), clock, async (leases) => {
      expect(await leases.acquire("a", 1_000)).toBeDefined();
      expect(await leases.acquire("b", 1_000)).toBeDefined();
    });
  });

  it("lets an expired lease go to the next caller with a higher token", async () => {
    const clock = new ManualClock(T0);
    await inObject(fresh(), clock, async (leases) => {
      const first = await leases.acquire("k", 10_000);
      clock.advance(9_999);
      expect(await leases.acquire("k", 10_000)).toBeUndefined();
      clock.advance(1);
      const second = await leases.acquire("k", 10_000);
      expect(second!.token).toBeGreaterThan(first!.token);
      // The dead holder comes back: it can neither extend nor release the new lease.
      expect(await leases.extend(first!, 10_000)).toBe(false);
      expect(await leases.release(first!)).toBe(false);
      expect(leases.current("k")?.token).toBe(second!.token);
    });
  });

  it("keeps an expired lease nobody took for its holder's late heartbeat; releasing an expired one reports the loss", async () => {
    const clock = new ManualClock(T0);
    await inObject(fresh(), clock, async (leases) => {
      const lease = await leases.acquire("k", 1_000);
      clock.advance(5_000);
      expect(await leases.extend(lease!, 1_000)).toBe(true);
      expect(lease!.expiresAt).toBe(T0 + 6_000);
      expect(await leases.acquire("k", 1_000)).toBeUndefined();
      clock.advance(1_000);
      expect(await leases.release(lease!)).toBe(false);
      expect(await leases.acquire("k", 1_000)).toBeDefined();
    });
  });

  it("refuses a forged token", async () => {
    const clock = new ManualClock(T0);
    await inObject(fresh(), clock, async (leases) => {
      const lease = await leases.acquire("k", 10_000);
      const forged = { ...lease!, token: lease!.token - 1 };
      expect(await leases.extend(forged, 10_000)).toBe(false);
      expect(await leases.release(forged)).toBe(false);
      expect(leases.current("k")?.token).toBe(lease!.token);
    });
  });

  it("issues strictly increasing tokens across keys and releases, none burnt by a refusal", async () => {
    const clock = new ManualClock(T0);
    await inObject(fresh(), clock, async (leases) => {
      const tokens: number[] = [];
      for (let i = 0; i < 5; i++) {
        const lease = await leases.acquire(i % 2 ? "a" : "b", 1_000);
        expect(await leases.acquire(i % 2 ? "a" : "b", 1_000)).toBeUndefined();
        tokens.push(lease!.token);
        await leases.release(lease!);
      }
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBe(tokens[i - 1]! + 1);
    });
  });

  it("survives eviction: the lease is still held and tokens keep rising", async () => {
    const clock = new ManualClock(T0);
    const name = fresh();
    const before = await inObject(name, clock, (leases) => leases.acquire("k", 10_000));
    await abortAllDurableObjects();
    await inObject(name, clock, async (leases) => {
      expect(leases.current("k")?.token).toBe(before!.token);
      expect(await leases.acquire("k", 10_000)).toBeUndefined();
      clock.advance(10_000);
      const after = await leases.acquire("k", 10_000);
      expect(after!.token).toBeGreaterThan(before!.token);
    });
  });

  it("keeps tokens above every earlier one after the storage is wiped", async () => {
    const clock = new ManualClock(Date.parse("2026-01-01T00:00:00Z"));
    const name = fresh();
    const before = await inObject(name, clock, (leases) => leases.acquire("k", 10_000));
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(name));
    await runInDurableObject(stub, (_instance, state) => state.storage.deleteAll());
    clock.advance(1);
    const after = await inObject(name, clock, (leases) => leases.acquire("k", 10_000));
    expect(after!.token).toBeGreaterThan(before!.token);
  });

  it("rejects a nonsensical ttl with the field named", async () => {
    await inObject(fresh(), new ManualClock(T0), async (leases) => {
      await expect(leases.acquire("k", 0)).rejects.toThrow(/lease ttlMs must be a positive number/);
    });
  });
});
