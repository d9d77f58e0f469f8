import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import type { Entry } from "../../src/core/http/entry.ts";
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
