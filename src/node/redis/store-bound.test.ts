import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { parseConfig } from "../../core/config.ts";
import type { Entry } from "../../core/http/entry.ts";
import { testEntry } from "../../core/store/store-conformance.ts";
import { startCluster, type HaRedis } from "../../../test/node/redis-ha.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { RedisConnection } from "./connection.ts";
import { RedisLeaseManager } from "./lease.ts";
import { sharedMaxBytes } from "./store-bound.ts";
import { REDIS_CHUNK_BYTES } from "./store-chunks.ts";
import { RedisStore } from "./store.ts";

const T0 = 1_700_000_000_000;
const KiB = 1024;
const MiB = 1024 * KiB;
const redis = redisTestConnection();

/** A 2 KiB page, charged ~3.5 KB: a bound of 20 KiB holds five or six of them. */
const page = (key: string, now: number, overrides: Partial<Entry> = {}) =>
  testEntry(key, now, { body: new Uint8Array(2 * KiB).fill(97), ...overrides });

function setup(maxBytes = 20 * KiB, connection = redis.connection, prefix = redis.prefix()) {
  const clock = new ManualClock(T0);
  const store = new RedisStore({ connection, clock, prefix, maxBytes });
  return { clock, store, prefix };
}

/** What the bound recorded once it accounted for every write so far (it does so behind each write's answer). */
async function recorded(store: RedisStore): Promise<{ bytes: number; entries: number }> {
  await store.settled();
  return store.bound.usage();
}

/** The entry keys Redis holds under `prefix`, as cache keys. */
async function storedKeys(prefix: string): Promise<string[]> {
  const keys = await redis.connection.client.keys(`${prefix}entry:*`);
  return keys.map((key) => key.slice(`${prefix}entry:`.length)).sort();
}

describe("RedisStore's bound (cache.sharedMaxBytes)", () => {
  it("past the bound evicts the entries written longest ago, from Redis: the newest still read", async () => {
    const { clock, store, prefix } = setup();
    for (let n = 0; n < 20; n++) {
      expect(await store.put(page(`k${n}`, clock.now()))).toBe(true);
      clock.advance(1);
    }
    const usage = await recorded(store);
    expect(usage.bytes).toBeLessThanOrEqual(20 * KiB);
    expect(usage.entries).toBeGreaterThanOrEqual(4);
    const kept = Array.from({ length: usage.entries }, (_, i) => `k${20 - usage.entries + i}`);
    expect(await storedKeys(prefix)).toEqual([...kept].sort());
    expect(await store.get("k0")).toBeUndefined();
    expect((await store.get("k19"))?.key).toBe("k19");
  });

  it("drops the expired entries' records before evicting a live one", async () => {
    const { clock, store } = setup();
    await store.put(page("long", clock.now(), { deleteAt: T0 + 3_600_000 }));
    // Four short-lived entries written after it, past their deleteAt once the clock moves on.
    for (let n = 0; n < 4; n++) await store.put(page(`short${n}`, clock.now(), { deleteAt: T0 + 1_000 }));
    clock.advance(2_000);
    await store.put(page("next", clock.now()));
    expect((await store.get("long"))?.key).toBe("long");
    expect((await recorded(store)).entries).toBe(2);
  });

  it("counts a key written again once, and forgets it when it is deleted, invalidated to nothing or written past its deleteAt", async () => {
    const { clock, store } = setup(1 * MiB);
    for (let token = 1; token <= 10; token++) await store.put(page("k1", clock.now(), { token }));
    const once = await recorded(store);
    expect(once.entries).toBe(1);
    await store.put(page("k2", clock.now()));
    expect((await recorded(store)).bytes).toBe(2 * once.bytes);
    await store.delete("k1");
    expect(await recorded(store)).toEqual(once);
    // An invalidation's mark (no body) costs less than the page it replaced.
    await store.put({ ...page("k2", clock.now(), { token: 2 }), body: new Uint8Array(0), invalidatedAt: T0 });
    expect((await recorded(store)).bytes).toBeLessThan(once.bytes);
    clock.advance(1);
    expect(await store.put(page("k2", clock.now(), { token: 3, deleteAt: T0 - 1 }))).toBe(true);
    expect(await recorded(store)).toEqual({ bytes: 0, entries: 0 });
  });

  it("several members writing at once: every entry in Redis is counted once, within the bound", async () => {
    const prefix = redis.prefix();
    const members = await Promise.all([0, 1, 2, 3].map(async () => setup(40 * KiB, await redis.connect(), prefix)));
    // Each writes 40 keys, half of them also written by the others.
    await Promise.all(
      members.map(({ store, clock }, m) =>
        Promise.all(
          Array.from({ length: 40 }, (_, n) =>
            store.put(page(n % 2 === 0 ? `shared${n}` : `own${m}:${n}`, clock.now(), { token: m + 1 })),
          ),
        ),
      ),
    );
    await Promise.all(members.map(({ store }) => store.settled()));
    const { store } = members[0]!;
    const usage = await store.bound.usage();
    expect(usage.bytes).toBeLessThanOrEqual(40 * KiB);
    // Each entry Redis holds is recorded, as the write it is (its token): none grows Redis uncounted.
    const records = await redis.connection.client.hgetall(`${prefix}{stored}:sizes`);
    for (const key of await storedKeys(prefix)) {
      const token = await redis.connection.client.hget(store.redisKey(key), "t");
      expect([key, records[key]?.split(" ")[3]]).toEqual([key, token]);
    }
    const sum = Object.values(records).reduce((total, record) => total + Number(record.split(" ")[0]), 0);
    expect(usage.bytes).toBe(sum);
  });

  it("counts a chunked body's chunks, and deletes them with an evicted entry", async () => {
    const { clock, store, prefix } = setup(4 * MiB);
    const chunkKeys = () => redis.connection.client.keys(`${prefix}chunk:*`);
    const big = new Uint8Array(REDIS_CHUNK_BYTES * 2 + 5).fill(3);
    await store.put(testEntry("first", clock.now(), { body: big }));
    // Three chunks, each taking 1.25 MiB of Redis (its allocation class), as MEMORY USAGE says.
    const usage = await recorded(store);
    const used = await Promise.all((await chunkKeys()).map((key) => redis.connection.client.memory("USAGE", key)));
    expect(usage.bytes).toBeGreaterThanOrEqual(used.reduce<number>((sum, bytes) => sum + (bytes ?? 0), 0));
    clock.advance(1);
    await store.put(testEntry("second", clock.now(), { body: big }));
    await store.settled();
    expect(await store.get("first")).toBeUndefined();
    expect(Buffer.from((await store.get("second"))!.body).equals(big)).toBe(true);
    expect(await chunkKeys()).toHaveLength(3);
  });

  it("never evicts the fleet's coordination keys: a lease taken before the flood is still held", async () => {
    const { clock, store, prefix } = setup();
    const leases = new RedisLeaseManager({ connection: redis.connection, clock, prefix });
    const lease = await leases.acquire("k0", 60_000);
    for (let n = 0; n < 50; n++) await store.put(page(`k${n}`, clock.now()));
    await store.settled();
    expect(await leases.held("k0")).toBe(true);
    expect(await leases.release(lease!)).toBe(true);
  });

  it("an evicted entry written again since its record was taken is kept (the write is newer than the eviction)", async () => {
    const { clock, store } = setup(1 * MiB);
    const first = page("k", clock.now(), { token: 1 });
    await store.put(first);
    await store.put(page("k", clock.now(), { token: 2 }));
    const victim = { key: "k", token: String(first.token), deleteAt: String(first.deleteAt) };
    expect(await store.bound.evict(victim, store.redisKey("k"))).toBeUndefined();
    expect((await store.get("k"))?.token).toBe(2);
  });

  it("a write the bound could not record stands, and its failure is reported (the fleet logs it)", async () => {
    const errors: unknown[] = [];
    const clock = new ManualClock(T0);
    const store = new RedisStore({
      connection: redis.connection,
      clock,
      prefix: redis.prefix(),
      onBoundError: (error) => void errors.push(error),
    });
    store.bound.record = () => Promise.reject(new Error("redis record failed"));
    expect(await store.put(page("k", clock.now()))).toBe(true);
    expect((await store.get("k"))?.key).toBe("k");
    await store.settled();
    expect(errors).toEqual([new Error("redis record failed")]);
  });

  it("drift corrects itself: records of entries gone behind its back are evicted first, and the count comes back down", async () => {
    const { clock, store, prefix } = setup();
    for (let n = 0; n < 5; n++) await store.put(page(`ghost${n}`, clock.now()));
    // Gone without a word to the records: a delete whose recording failed, an operator's DEL.
    await redis.connection.client.del(...(await redis.connection.client.keys(`${prefix}entry:*`)));
    for (let n = 0; n < 10; n++) await store.put(page(`live${n}`, clock.now()));
    await store.settled();
    const records = await redis.connection.client.hkeys(`${prefix}{stored}:sizes`);
    expect(records.sort()).toEqual(await storedKeys(prefix));
    expect(records.every((key) => key.startsWith("live"))).toBe(true);
  });
});

describe("RedisStore's bound on a Redis Cluster (entries spread over slots, the records in one)", () => {
  let cluster: HaRedis | undefined;
  afterAll(() => cluster?.stop());

  it("records every write and evicts past the bound, with no CROSSSLOT error swallowed on the way", async () => {
    cluster = await startCluster();
    const connection = new RedisConnection({ url: cluster.url });
    await connection.ready();
    const { clock, store } = setup(20 * KiB, connection);
    for (let n = 0; n < 20; n++) expect(await store.put(page(`k${n}`, clock.now()))).toBe(true);
    const usage = await recorded(store);
    expect(usage.bytes).toBeLessThanOrEqual(20 * KiB);
    expect(usage.entries).toBeGreaterThanOrEqual(4);
    const held = await Promise.all(
      Array.from({ length: 20 }, async (_, n) => Boolean(await connection.client.exists(store.redisKey(`k${n}`)))),
    );
    expect(held).toEqual(Array.from({ length: 20 }, (_, n) => n >= 20 - usage.entries));
    await store.delete("k19");
    expect((await recorded(store)).entries).toBe(usage.entries - 1);
    await connection.close();
  }, 60_000);
});

describe("sharedMaxBytes", () => {
  const origin = { url: "http://127.0.0.1:1" };
  it("is four times cache.maxBytes (1 GiB by default), at least cache.maxEntryBytes, unless set", () => {
    expect(sharedMaxBytes(parseConfig({ origin }))).toBe(1024 * MiB);
    expect(sharedMaxBytes(parseConfig({ origin, cache: { maxBytes: 64 * MiB } }))).toBe(256 * MiB);
    expect(sharedMaxBytes(parseConfig({ origin, cache: { maxBytes: 1 * MiB } }))).toBe(25 * MiB);
    expect(sharedMaxBytes(parseConfig({ origin, cache: { sharedMaxBytes: 32 * MiB } }))).toBe(32 * MiB);
  });
});
