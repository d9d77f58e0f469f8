import type { Config } from "../../core/config.ts";
import { DEFAULT_CACHE_MAX_BYTES } from "../../core/config/fields.ts";
import type { RedisConnection } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";
import { REDIS_CHUNK_BYTES } from "./store-chunks.ts";

/** The shared tier holds this many near tiers' worth (see {@link sharedMaxBytes}). */
const NEAR_TIERS_SHARED = 4;

/**
 * The shared tier's bound by default, when the store is made without one: what
 * {@link sharedMaxBytes} derives from the default `cache.maxBytes`.
 */
export const DEFAULT_SHARED_MAX_BYTES = NEAR_TIERS_SHARED * DEFAULT_CACHE_MAX_BYTES;

/**
 * What Redis spends on one entry beside its bytes and its key: the entry hash's own objects
 * and expiry, its three records here and the dictionaries' buckets, measured with INFO
 * memory `used_memory` over 2,000 entries (200 B to 20 KB bodies: 550–620 B), with room.
 * Charged on every entry so the bound holds for small pages too, as the near tier charges its
 * objects (store/lru-store.ts).
 */
const ENTRY_OVERHEAD_BYTES = 768;
/** Each byte of the key is kept beside the entry about five times (measured): its name, its records (a hash field, a member of two sorted sets). */
const KEY_COPIES = 6;
/** What Redis spends on one chunk key beside its bytes. */
const CHUNK_OVERHEAD_BYTES = 128;
/** The most entries one write evicts: a script that evicted a whole lowered bound at once would hold Redis. */
const MAX_VICTIMS_PER_WRITE = 256;
/** The most expired records one write drops. */
const MAX_EXPIRED_PER_WRITE = 64;

/**
 * What one entry costs Redis: its encoded bytes (head and, unless chunked, body) and its
 * chunks, each as allocated, its key (in the entry's name and in each of the records of
 * {@link StoreBound}) and the objects around them.
 */
export function chargedBytes(key: string, encodedBytes: number, chunks: number, chunkBytes: number): number {
  const chunked =
    chunks === 0
      ? 0
      : (chunks - 1) * allocated(REDIS_CHUNK_BYTES) + allocated(chunkBytes % REDIS_CHUNK_BYTES || REDIS_CHUNK_BYTES);
  return (
    allocated(encodedBytes) +
    chunked +
    chunks * CHUNK_OVERHEAD_BYTES +
    KEY_COPIES * Buffer.byteLength(key, "utf8") +
    ENTRY_OVERHEAD_BYTES
  );
}

/**
 * What Redis's allocator (jemalloc) hands out for a value of `bytes`: the string's header
 * (up to 9 bytes and its end) is added, and the size classes are four per doubling, so a
 * value takes up to a quarter more than its length: a 1 MiB chunk takes 1.25 MiB.
 */
function allocated(bytes: number): number {
  const size = bytes + 10;
  const step = 2 ** Math.max(Math.floor(Math.log2(size - 1)) - 2, 4);
  return Math.ceil(size / step) * step;
}

/**
 * Drops the records of expired entries, records a write (or, with bytes '', forgets the
 * key's record of a write up to that token: the one a delete removed), then takes the
 * entries written longest ago off the records until the total is within the bound, and
 * returns them as victims `[key, token, deleteAt, …]` for the caller to delete.
 * A record is `bytes writtenAt deleteAt token` in the hash `sizes`, and the key is in the
 * sorted sets `order` (by the order of recording: the members' clocks tie within a
 * millisecond, and a frozen test clock always) and `expiry` (by deleteAt); the hash `total`
 * holds `bytes`, the sum of every record's, kept in the same atomic step so concurrent
 * writers never count twice, and `seq`, the last recording's number.
 * The key's record of a newer write (higher token, as the entry's fence judges; or the same
 * token written later) stays: its recording came first, and that write is the one in Redis.
 * KEYS: sizes, order, expiry, total; ARGV: key, bytes, writtenAt, deleteAt, token, maxBytes,
 * now, maxVictims, maxExpired.
 */
const RECORD = new LuaScript(`
local sizes, order, expiry, total = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function forget(member)
  local record = redis.call('HGET', sizes, member)
  if not record then return nil end
  redis.call('HDEL', sizes, member)
  redis.call('ZREM', order, member)
  redis.call('ZREM', expiry, member)
  redis.call('HINCRBY', total, 'bytes', -tonumber(string.match(record, '^(%d+)')))
  return record
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', ARGV[7], 'LIMIT', 0, tonumber(ARGV[9]))) do
  forget(member)
end
local key, token, at = ARGV[1], tonumber(ARGV[5]), tonumber(ARGV[3])
local current = redis.call('HGET', sizes, key)
local newer = false
if current then
  local currentAt, currentToken = string.match(current, '^%d+ (%S+) %S+ (%S+)$')
  currentAt, currentToken = tonumber(currentAt), tonumber(currentToken)
  newer = currentToken > token or (ARGV[2] ~= '' and currentToken == token and currentAt > at)
end
if not newer then
  forget(key)
  if ARGV[2] ~= '' then
    redis.call('HSET', sizes, key, ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
    redis.call('ZADD', order, redis.call('HINCRBY', total, 'seq', 1), key)
    redis.call('ZADD', expiry, ARGV[4], key)
    redis.call('HINCRBY', total, 'bytes', ARGV[2])
  end
end
local victims = {}
local bound = tonumber(ARGV[6])
while tonumber(redis.call('HGET', total, 'bytes') or '0') > bound and #victims < 3 * tonumber(ARGV[8]) do
  local oldest = redis.call('ZRANGE', order, 0, 0)
  if #oldest == 0 then
    redis.call('HSET', total, 'bytes', 0)
    break
  end
  local record = forget(oldest[1])
  local deleteAt, victimToken = string.match(record, '^%d+ %S+ (%S+) (%S+)$')
  table.insert(victims, oldest[1])
  table.insert(victims, victimToken)
  table.insert(victims, deleteAt)
end
return victims
`);

/**
 * Deletes an evicted entry if it is still the write that was recorded (same token and
 * deleteAt): an entry written again since its record was taken off stays. Replies its chunk
 * ref ('' for none), or false when it was not deleted. KEYS[1] entry hash; ARGV token, deleteAt.
 */
const EVICT = new LuaScript(`
local current = redis.call('HMGET', KEYS[1], 't', 'd', 'c')
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then return false end
redis.call('DEL', KEYS[1])
return current[3] or ''
`);

/** One write of an entry, as recorded. */
export interface RecordedWrite {
  key: string;
  /** {@link chargedBytes} of the entry. */
  bytes: number;
  writtenAt: number;
  deleteAt: number;
  token: number;
}

/** An entry taken off the records: deleted by {@link StoreBound.evict} unless written again since. */
export interface Victim {
  key: string;
  token: string;
  deleteAt: string;
}

/**
 * The bound on what a fleet stores in Redis (`cache.sharedMaxBytes`): every entry written is
 * recorded with what it costs; past the bound, the entries written longest ago are evicted,
 * after the records of expired entries are dropped. Only entries are ever recorded, so the
 * leases, fences, guard permits, purge lists and member records are never evicted.
 *
 * On Redis Cluster an entry's key and the records (`<prefix>{stored}:…`, one slot) are in
 * different slots, so recording is a step of its own after the write, on every Redis alike:
 * a write whose recording failed (Redis went away between the two) is not counted, and goes
 * at its physical TTL. A record never outlives its entry's deleteAt, so a record left by a
 * delete whose recording failed counts only until then (or until it is evicted: deleting a
 * gone entry does nothing).
 *
 * @example
 * const bound = new StoreBound({ connection, prefix: "herdless:", maxBytes: 1 << 30 });
 * for (const victim of await bound.record(write, now)) await bound.evict(victim, redisKey(victim.key));
 */
export class StoreBound {
  private readonly connection: RedisConnection;
  private readonly keys: string[];
  readonly maxBytes: number;

  constructor(options: { connection: RedisConnection; prefix: string; maxBytes: number }) {
    this.connection = options.connection;
    this.maxBytes = options.maxBytes;
    const at = (role: string) => `${options.prefix}{stored}:${role}`;
    this.keys = [at("sizes"), at("order"), at("expiry"), at("bytes")];
  }

  /** Records `write` (replacing the key's record); the victims to evict. */
  record(write: RecordedWrite, now: number): Promise<Victim[]> {
    const { key, bytes, writtenAt, deleteAt, token } = write;
    return this.run(key, String(Math.ceil(bytes)), writtenAt, deleteAt, token, now);
  }

  /**
   * Forgets `key`'s record of a write up to `token` (the entry a delete removed, or one a write
   * past its deleteAt replaced); the victims to evict, if others wrote past the bound meanwhile.
   */
  forget(key: string, token: number, now: number): Promise<Victim[]> {
    return this.run(key, "", 0, 0, token, now);
  }

  /** Deletes `victim`'s entry (at `entryKey`) if it is the write recorded; its chunk ref, '' for none. */
  async evict(victim: Victim, entryKey: string): Promise<string | undefined> {
    const reply = await this.connection.run("evict", (client) =>
      EVICT.run(client, [entryKey], [victim.token, victim.deleteAt]),
    );
    return typeof reply === "string" ? reply : undefined;
  }

  /** The bytes recorded and how many entries (for operators and tests). */
  async usage(): Promise<{ bytes: number; entries: number }> {
    const [bytes, entries] = await this.connection.run("usage", (client) =>
      Promise.all([client.hget(this.keys[3]!, "bytes"), client.hlen(this.keys[0]!)]),
    );
    return { bytes: Number(bytes ?? 0), entries };
  }

  private async run(
    key: string,
    bytes: string,
    writtenAt: number,
    deleteAt: number,
    token: number,
    now: number,
  ): Promise<Victim[]> {
    const args = [key, bytes, writtenAt, deleteAt, token, this.maxBytes, now];
    const reply = (await this.connection.run("record", (client) =>
      RECORD.run(client, this.keys, [...args, MAX_VICTIMS_PER_WRITE, MAX_EXPIRED_PER_WRITE]),
    )) as string[];
    const victims: Victim[] = [];
    for (let n = 0; n + 2 < reply.length; n += 3)
      victims.push({ key: reply[n]!, token: reply[n + 1]!, deleteAt: reply[n + 2]! });
    return victims;
  }
}

/**
 * The fleet's bound on its entries in Redis: `cache.sharedMaxBytes`, else four times
 * `cache.maxBytes` (1 GiB by default) and at least `cache.maxEntryBytes`. Four times one
 * process's near tier: the shared tier holds what the members' near tiers hold (mostly the
 * same hot pages) and what they evicted, for a fleet's first few members, within the memory
 * of a Redis host sized for such a fleet; a flood of distinct URLs can no longer grow it.
 */
export function sharedMaxBytes(config: Config): number {
  const { sharedMaxBytes: set, maxBytes, maxEntryBytes } = config.cache;
  return set ?? Math.max(NEAR_TIERS_SHARED * maxBytes, maxEntryBytes);
}
