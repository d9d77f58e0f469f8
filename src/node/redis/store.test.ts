import { describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { parseConfig } from "../../core/config.ts";
import { isHerdlessError } from "../../core/errors.ts";
import { KeyCoordinator } from "../../core/fill/key-coordinator.ts";
import { MemoryLeaseManager } from "../../core/fill/memory-lease.ts";
import { LocalGuard } from "../../core/guard/local-guard.ts";
import { invalidateStored, lookup } from "../../core/store/lookup.ts";
import { storeConformance, testEntry } from "../../core/store/store-conformance.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { RedisConnection } from "./connection.ts";
import { RedisLeaseManager } from "./lease.ts";
import { RedisStore } from "./store.ts";
import { REDIS_CHUNK_BYTES } from "./store-chunks.ts";

const T0 = 1_700_000_000_000;
const redis = redisTestConnection();

storeConformance("redis", async () => {
  const clock = new ManualClock(T0);
  return { clock, store: new RedisStore({ connection: redis.connection, clock, prefix: redis.prefix() }) };
});

describe("RedisStore", () => {
  it("sets the physical TTL to deleteAt − now", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisStore({ connection: redis.connection, clock, prefix: redis.prefix() });
    await store.put(testEntry("k", T0, { deleteAt: T0 + 60_000 }));
    const pttl = await redis.connection.client.pttl(store.redisKey("k"));
    expect(pttl).toBeGreaterThan(59_000);
    expect(pttl).toBeLessThanOrEqual(60_000);
  });

  it("lets a lower token replace an entry past its deleteAt", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisStore({ connection: redis.connection, clock, prefix: redis.prefix() });
    await store.put(testEntry("k", T0, { token: 9, deleteAt: T0 + 5_000 }));
    clock.advance(5_000);
    expect(await store.put(testEntry("k", clock.now(), { token: 2 }))).toBe(true);
    expect((await store.get("k"))?.token).toBe(2);
  });

  it("answers the requests that read one key at once with one Redis read (an expiry's waiting requests)", async () => {
    const store = new RedisStore({ connection: redis.connection, clock: new ManualClock(T0), prefix: redis.prefix() });
    await store.put(testEntry("k", T0, { token: 3 }));
    const reads = async () =>
      Number(/cmdstat_hmget:calls=(\d+)/.exec(await redis.connection.client.info("commandstats"))?.[1] ?? 0);
    const before = await reads();
    const entries = await Promise.all(Array.from({ length: 20 }, () => store.get("k")));
    expect(entries.map((entry) => entry?.token)).toEqual(Array(20).fill(3));
    expect((await reads()) - before).toBe(1);
  });

  it("a read asked for while a write of the key is under way does not take an earlier read's answer", async () => {
    const store = new RedisStore({ connection: redis.connection, clock: new ManualClock(T0), prefix: redis.prefix() });
    await store.put(testEntry("k", T0, { token: 1 }));
    const early = store.get("k");
    const written = store.put(testEntry("k", T0, { token: 2 }));
    const late = store.get("k");
    expect((await early)?.token).toBe(1);
    await written;
    expect((await late)?.token).toBe(2);
    expect((await store.get("k"))?.token).toBe(2);
  });

  it("a read asked for after a lease acquire was sent is answered as of after it, not by another caller's read sent before (the fleet's look under the lease, beside the acquire)", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    const store = new RedisStore({ connection: redis.connection, clock, prefix });
    const leases = new RedisLeaseManager({
      connection: redis.connection,
      clock,
      prefix,
      onAcquire: () => store.cutReads(),
    });
    // Another process: it holds the key's lease, stores its entry and frees the lease between that read and the acquire.
    const other = {
      store: new RedisStore({ connection: redis.connection, clock, prefix }),
      leases: new RedisLeaseManager({ connection: redis.connection, clock, prefix }),
    };
    await other.leases.release((await other.leases.acquire("warm", 10_000))!);
    await other.store.put(testEntry("k", T0, { token: 1 }));
    const held = (await other.leases.acquire("k", 10_000))!;
    const early = store.get("k");
    const written = other.store.put(testEntry("k", T0, { token: held.token }));
    const released = other.leases.release(held);
    const acquiring = leases.acquire("k", 10_000);
    const underLease = store.get("k");
    expect((await early)?.token).toBe(1);
    expect([await written, await released]).toEqual([true, true]);
    expect(await acquiring).toBeDefined();
    expect((await underLease)?.token).toBe(held.token);
  });

  it("does not keep an entry written past its deleteAt", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisStore({ connection: redis.connection, clock, prefix: redis.prefix() });
    await store.put(testEntry("k", T0, { deleteAt: T0 - 1 }));
    expect(await redis.connection.client.exists(store.redisKey("k"))).toBe(0);
  });

  it("treats an entry of another format version as a miss", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisStore({ connection: redis.connection, clock, prefix: redis.prefix() });
    const meta = new TextEncoder().encode(JSON.stringify({ v: 99 }));
    const bytes = Buffer.alloc(4 + meta.length);
    bytes.writeUInt32BE(meta.length, 0);
    bytes.set(meta, 4);
    await redis.connection.client.hset(store.redisKey("k"), "t", 1, "d", T0 + 1000, "b", bytes);
    expect(await store.get("k")).toBeUndefined();
  });

  it("keeps a large body in chunk keys, and removes them when the entry is replaced, fenced out or deleted", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    const store = new RedisStore({ connection: redis.connection, clock, prefix });
    const chunkKeys = () => redis.connection.client.keys(`${prefix}chunk:*`);
    const big = new Uint8Array(REDIS_CHUNK_BYTES * 2 + 5).fill(3);
    await store.put(testEntry("k", T0, { body: big, token: 5 }));
    expect(await chunkKeys()).toHaveLength(3);
    // An older writer is refused and leaves no chunks behind.
    expect(await store.put(testEntry("k", T0, { body: big, token: 4 }))).toBe(false);
    expect(await chunkKeys()).toHaveLength(3);
    expect(await store.put(testEntry("k", T0, { body: big, token: 6 }))).toBe(true);
    expect(await chunkKeys()).toHaveLength(3);
    expect((await store.get("k"))?.token).toBe(6);
    await store.delete("k");
    expect(await chunkKeys()).toHaveLength(0);
  });

  it("treats a chunked entry whose chunks are gone as a miss", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    const store = new RedisStore({ connection: redis.connection, clock, prefix });
    await store.put(testEntry("k", T0, { body: new Uint8Array(REDIS_CHUNK_BYTES + 1) }));
    const [one] = await redis.connection.client.keys(`${prefix}chunk:*`);
    await redis.connection.client.del(one!);
    expect(await store.get("k")).toBeUndefined();
  });

  it("fails fast with COORDINATOR_UNAVAILABLE when Redis is gone", async () => {
    const dead = new RedisConnection({ url: "redis://127.0.0.1:1" });
    const store = new RedisStore({ connection: dead, clock: new ManualClock(T0) });
    const started = performance.now();
    const error = await store.get("k").catch((e: unknown) => e);
    expect(isHerdlessError(error, "COORDINATOR_UNAVAILABLE")).toBe(true);
    expect(performance.now() - started).toBeLessThan(1_000);
    await dead.close();
  });
});

describe("RFC 9111 §4.4 in a fleet: a member that has not heard of a write yet", () => {
  const primary = "GET http://shop.test/balance";
  const none = { get: () => null };

  it("a put asked at or before a live mark's write is refused; a later answer, a Vary pointer keeping the mark, or a mark of a later write is written", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisStore({ connection: redis.connection, clock, prefix: redis.prefix() });
    await store.put(testEntry(primary, T0, { token: 1 }));
    clock.advance(1_000);
    await invalidateStored(store, primary, none, clock.now());
    const writtenAt = clock.now();
    expect(await store.put(testEntry(primary, T0, { token: 5 }))).toBe(false);
    expect(await store.put(testEntry(primary, writtenAt, { token: 5 }))).toBe(false);
    const pointer = { ...testEntry(primary, T0, { token: 5, vary: ["accept-language"] }), invalidatedAt: writtenAt };
    expect(await store.put({ ...pointer, body: new Uint8Array(0) })).toBe(true);
    clock.advance(1_000);
    expect(await store.put(testEntry(primary, writtenAt + 1, { token: 6 }))).toBe(true);
    // The mark goes with the entry that replaced it: the next put is judged by token alone.
    expect(await store.put(testEntry(primary, T0, { token: 7 }))).toBe(true);
  });

  it("its fill, answered before the write through another member, never replaces the write's mark in Redis: the next visitor gets no old page", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    // Two members' views of one Redis: the writer's, and the late one whose fill was running.
    const writers = new RedisStore({ connection: redis.connection, clock, prefix });
    const late = new RedisStore({ connection: redis.connection, clock, prefix });
    const config = parseConfig({ origin: { url: "http://origin.test" } });
    let version = 1;
    let answer: (() => void) | undefined;
    const coordinator = new KeyCoordinator({
      config,
      clock,
      store: late,
      leases: new MemoryLeaseManager(clock),
      guard: new LocalGuard({ config, clock }),
      fetch: () =>
        new Promise((resolve) => {
          const page = `balance v${version}`;
          answer = () => resolve(new Response(page, { headers: { "cache-control": "max-age=60" } }));
        }),
    });
    const request = { primary, key: primary, url: "http://origin.test/balance", path: "/balance", headers: [] };
    const fill = coordinator.fill({ ...request, priority: "foreground" });
    await vi.waitFor(() => expect(answer).toBeDefined());
    clock.advance(1_000);
    // The write succeeds through the other member, which marks Redis; the news has not reached this one.
    version = 2;
    await invalidateStored(writers, primary, none, clock.now());
    clock.advance(1_000);
    answer!();
    const result = await fill;
    // The request that asked before the write gets what it asked for, kept in no tier.
    expect(result.kind === "entry" && [result.stored, result.unkept]).toEqual([false, true]);
    // Before: its put, fenced by token alone, replaced the mark: balance v1 fresh for 60 s.
    expect((await lookup(writers, primary, primary, none)).entry).toBeUndefined();
  });
});
