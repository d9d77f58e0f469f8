import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { entryMeta, type Entry } from "../../src/core/http/entry.ts";
import type { Store } from "../../src/core/store/store.ts";
import { storeConformance, testEntry } from "../../src/core/store/store-conformance.ts";
import {
  DEFAULT_MAX_BODY_BYTES,
  DO_CHUNK_BYTES,
  DurableObjectStore,
  type DurableObjectStoreOptions,
} from "../../src/cloudflare/do-store.ts";

/**
 * A Store whose every call runs inside one Durable Object instance: storage may only be
 * touched from the object's own I/O context, not from the test's.
 */
function storeInObject(
  name: string,
  clock: ManualClock,
  options?: DurableObjectStoreOptions,
): Store & { expire(): Promise<number> } {
  const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(name));
  const inside = <T>(fn: (store: DurableObjectStore) => T | Promise<T>) =>
    runInDurableObject(stub, (_instance, state) => fn(new DurableObjectStore(state.storage, clock, options)));
  return {
    get: (key) => inside((s) => s.get(key)),
    put: (entry: Entry) => inside((s) => s.put(entry)),
    delete: (key) => inside((s) => s.delete(key)),
    expire: () => inside((s) => s.deleteExpired()),
  };
}

storeConformance("Durable Object SQLite", async () => {
  const clock = new ManualClock(1_000);
  return { clock, store: storeInObject(`conformance-${crypto.randomUUID()}`, clock) };
});

describe("DurableObjectStore limits and upkeep", () => {
  it("refuses a body above maxBodyBytes and keeps the previous entry", async () => {
    const clock = new ManualClock(1_000);
    const store = storeInObject(`limit-${crypto.randomUUID()}`, clock, { maxBodyBytes: 1_024 });
    expect(await store.put(testEntry("k", clock.now(), { body: new Uint8Array(1_024) }))).toBe(true);
    expect(await store.put(testEntry("k", clock.now(), { body: new Uint8Array(1_025), token: 2 }))).toBe(false);
    expect((await store.get("k"))?.body.byteLength).toBe(1_024);
  });

  it("stores a body of many 2 MB rows by default, and refuses one above maxBodyBytes", async () => {
    const clock = new ManualClock(1_000);
    const store = storeInObject(`big-${crypto.randomUUID()}`, clock);
    const body = new Uint8Array(DEFAULT_MAX_BODY_BYTES).map((_, i) => i % 251);
    expect(await store.put(testEntry("big", clock.now(), { body }))).toBe(true);
    const got = await store.get("big");
    expect(got?.body.byteLength).toBe(DEFAULT_MAX_BODY_BYTES);
    expect(got?.body[DEFAULT_MAX_BODY_BYTES - 1]).toBe((DEFAULT_MAX_BODY_BYTES - 1) % 251);
    expect(got?.body[DO_CHUNK_BYTES]).toBe(DO_CHUNK_BYTES % 251);
    const over = new Uint8Array(DEFAULT_MAX_BODY_BYTES + 1);
    expect(await store.put(testEntry("big", clock.now(), { body: over, token: 2 }))).toBe(false);
  });

  it("an attacker's variants of one page (Vary: User-Agent, a new value each) stop at maxEntries: the oldest fills go, the newest stays", async () => {
    const clock = new ManualClock(1_000);
    const store = storeInObject(`variants-${crypto.randomUUID()}`, clock, { maxEntries: 3 });
    expect(await store.put(testEntry("GET /p|ua=victim", clock.now(), { token: 1 }))).toBe(true);
    for (let token = 2; token <= 5; token++)
      expect(await store.put(testEntry(`GET /p|ua=attacker-${token}`, clock.now(), { token }))).toBe(true);
    expect(await store.get("GET /p|ua=victim")).toBeUndefined();
    expect(await store.get("GET /p|ua=attacker-2")).toBeUndefined();
    for (const token of [3, 4, 5]) expect(await store.get(`GET /p|ua=attacker-${token}`)).toBeDefined();
    // A variant filled again counts as new: it is not the next to go.
    expect(await store.put(testEntry("GET /p|ua=attacker-3", clock.now(), { token: 6 }))).toBe(true);
    expect(await store.put(testEntry("GET /p|ua=attacker-7", clock.now(), { token: 7 }))).toBe(true);
    expect(await store.get("GET /p|ua=attacker-3")).toBeDefined();
    expect(await store.get("GET /p|ua=attacker-4")).toBeUndefined();
  });

  it("rejects options beyond its limits with the field named", () => {
    const clock = new ManualClock(0);
    const fake = { sql: { exec: () => undefined } } as unknown as DurableObjectStorage;
    expect(() => new DurableObjectStore(fake, clock, { maxBodyBytes: 200 * 1024 * 1024 })).toThrow(
      /maxBodyBytes must be an integer from 0 to 134217728/,
    );
    expect(() => new DurableObjectStore(fake, clock, { prefix: "x; DROP" })).toThrow(/prefix must match/);
  });

  it("drops expired entries in bulk and keeps live ones", async () => {
    const clock = new ManualClock(1_000);
    const store = storeInObject(`expire-${crypto.randomUUID()}`, clock);
    await store.put(testEntry("short", clock.now(), { deleteAt: 2_000 }));
    await store.put(testEntry("long", clock.now(), { deleteAt: 9_000 }));
    clock.advance(1_000);
    expect(await store.expire()).toBe(1);
    expect(await store.get("long")).toBeDefined();
    expect(await store.delete("short")).toBe(false);
  });

  it("keeps entries when the object is evicted and rebuilt", async () => {
    const clock = new ManualClock(1_000);
    const name = `evict-${crypto.randomUUID()}`;
    await storeInObject(name, clock).put(testEntry("kept", clock.now(), { token: 4 }));
    await abortAllDurableObjects();
    expect((await storeInObject(name, clock).get("kept"))?.token).toBe(4);
  });
});

describe("DurableObjectStore layout", () => {
  const tablesOf = (name: string) =>
    runInDurableObject(env.COORDINATOR.get(env.COORDINATOR.idFromName(name)), (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'herdless_entry%'")
        .toArray()
        .map((row) => row.name)
        .sort(),
    );

  it("keeps a small body in its entry's row: a new key's first write makes one table", async () => {
    const clock = new ManualClock(1_000);
    const name = `inline-${crypto.randomUUID()}`;
    const store = storeInObject(name, clock);
    const body = new TextEncoder().encode("hello");
    expect(await store.put(testEntry("k", clock.now(), { body }))).toBe(true);
    expect(await tablesOf(name)).toEqual(["herdless_entry"]);
    expect(new TextDecoder().decode((await store.get("k"))?.body)).toBe("hello");
    expect(await store.put(testEntry("empty", clock.now(), { body: new Uint8Array(0) }))).toBe(true);
    expect((await store.get("empty"))?.body.byteLength).toBe(0);
  });

  it("moves a key from a large body in chunks to a small one in its row, and back", async () => {
    const clock = new ManualClock(1_000);
    const name = `switch-${crypto.randomUUID()}`;
    const store = storeInObject(name, clock);
    const large = new Uint8Array(DO_CHUNK_BYTES + 10).map((_, i) => i % 7);
    expect(await store.put(testEntry("k", clock.now(), { body: large, token: 1 }))).toBe(true);
    expect(await tablesOf(name)).toEqual(["herdless_entry", "herdless_entry_chunk"]);
    expect((await store.get("k"))?.body.byteLength).toBe(DO_CHUNK_BYTES + 10);
    expect(await store.put(testEntry("k", clock.now(), { body: new Uint8Array([1, 2, 3]), token: 2 }))).toBe(true);
    expect([...((await store.get("k"))?.body ?? [])]).toEqual([1, 2, 3]);
    const chunksLeft = await runInDurableObject(env.COORDINATOR.get(env.COORDINATOR.idFromName(name)), (_i, state) =>
      state.storage.sql.exec("SELECT key FROM herdless_entry_chunk").toArray(),
    );
    expect(chunksLeft).toEqual([]);
    expect(await store.put(testEntry("k", clock.now(), { body: large, token: 3 }))).toBe(true);
    expect((await store.get("k"))?.body[DO_CHUNK_BYTES + 9]).toBe((DO_CHUNK_BYTES + 9) % 7);
  });

  it("reads entries an older version stored (layout 2, body in chunks), and writes over them", async () => {
    const clock = new ManualClock(1_000);
    const name = `layout2-${crypto.randomUUID()}`;
    const meta = JSON.stringify(entryMeta(testEntry("old", clock.now(), { token: 3 })));
    await runInDurableObject(env.COORDINATOR.get(env.COORDINATOR.idFromName(name)), (_i, state) => {
      // The tables and a row exactly as layout 2 wrote them.
      state.storage.sql.exec(
        "CREATE TABLE herdless_entry (key TEXT PRIMARY KEY, token INTEGER NOT NULL, delete_at INTEGER NOT NULL, meta TEXT NOT NULL, bytes INTEGER NOT NULL, chunks INTEGER NOT NULL)",
      );
      state.storage.sql.exec(
        "CREATE TABLE herdless_entry_chunk (key TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (key, seq))",
      );
      const entry = testEntry("old", clock.now(), { token: 3 });
      state.storage.sql.exec(
        "INSERT INTO herdless_entry (key, token, delete_at, meta, bytes, chunks) VALUES (?, ?, ?, ?, ?, 1)",
        "old",
        3,
        entry.deleteAt,
        meta,
        3,
      );
      state.storage.sql.exec(
        "INSERT INTO herdless_entry_chunk (key, seq, body) VALUES (?, 0, ?)",
        "old",
        new Uint8Array([7, 8, 9]),
      );
    });
    const store = storeInObject(name, clock);
    const old = await store.get("old");
    expect(old?.token).toBe(3);
    expect([...(old?.body ?? [])]).toEqual([7, 8, 9]);
    // Fenced as before: an older token does not replace it.
    expect(await store.put(testEntry("old", clock.now(), { token: 2 }))).toBe(false);
    expect(await store.put(testEntry("new", clock.now(), { body: new Uint8Array([1]), token: 4 }))).toBe(true);
    expect([...((await store.get("new"))?.body ?? [])]).toEqual([1]);
    expect([...((await store.get("old"))?.body ?? [])]).toEqual([7, 8, 9]);
  });
});
