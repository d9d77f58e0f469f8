import type { Clock } from "../core/clock.ts";
import { systemClock } from "../core/clock.ts";
import type { Entry } from "../core/http/entry.ts";
import { decodeEntry, encodeEntry } from "../core/http/entry.ts";
import { isHerdlessError } from "../core/errors.ts";
import type { Store } from "../core/store/store.ts";
import type { RedisConnection } from "./redis-connection.ts";
import { LuaScript } from "./redis-connection.ts";

export interface RedisStoreOptions {
  connection: RedisConnection;
  /** Namespace for every key, e.g. `"herdless:"`; lets deployments share one Redis. */
  prefix?: string;
  clock?: Clock;
}

/**
 * Fenced write. The entry lives in a hash `{ t: token, d: deleteAt, b: encoded bytes }`
 * so the token comparison and the write happen in one atomic step: a late writer with
 * an older token never replaces a newer live entry, however the two interleave.
 * KEYS[1] entry hash; ARGV: token, deleteAt, bytes, now, ttlMs.
 */
const PUT = new LuaScript(`
local current = redis.call('HMGET', KEYS[1], 't', 'd')
if current[1] and tonumber(current[1]) > tonumber(ARGV[1]) and tonumber(current[2]) > tonumber(ARGV[4]) then
  return 0
end
if tonumber(ARGV[5]) <= 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'd', ARGV[2], 'b', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`);

/**
 * The shared tier of a Node fleet: a {@link Store} on Redis. Entries carry a physical
 * TTL (`deleteAt − now`) so Redis frees them by itself; reads also compare `deleteAt`
 * with the clock, so the store never serves past `deleteAt` even if Redis's clock lags.
 * Every failure surfaces as a HerdlessError with code COORDINATOR_UNAVAILABLE.
 *
 * @example
 * const store = new RedisStore({ connection, prefix: "herdless:" });
 * await store.put(entry); await store.get(entry.key);
 */
export class RedisStore implements Store {
  private readonly connection: RedisConnection;
  private readonly prefix: string;
  private readonly clock: Clock;

  constructor(options: RedisStoreOptions) {
    this.connection = options.connection;
    this.prefix = options.prefix ?? "herdless:";
    this.clock = options.clock ?? systemClock;
  }

  /** The Redis key holding `key`'s entry (exposed for operators and tests). */
  redisKey(key: string): string {
    return `${this.prefix}entry:${key}`;
  }

  async get(key: string): Promise<Entry | undefined> {
    const bytes = await this.connection.run("get", (client) => client.hgetBuffer(this.redisKey(key), "b"));
    if (!bytes) return undefined;
    let entry: Entry;
    try {
      // A plain view, so decodeEntry's slice copies the body out of ioredis's buffer.
      entry = decodeEntry(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (error) {
      // An entry written by another format version (rolling deploy) or damaged is a miss:
      // the cache must never fail a request because of what it holds.
      if (isHerdlessError(error, "ENTRY_VERSION") || isHerdlessError(error, "ENTRY_CORRUPT")) return undefined;
      throw error;
    }
    // Not deleted here: under a real clock another process may be writing a newer entry,
    // and the physical TTL removes this one anyway.
    return this.clock.now() >= entry.deleteAt ? undefined : entry;
  }

  async put(entry: Entry): Promise<boolean> {
    const now = this.clock.now();
    const encoded = encodeEntry(entry);
    const bytes = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    const ttlMs = Math.ceil(entry.deleteAt - now);
    const written = await this.connection.run("put", (client) =>
      PUT.run(client, [this.redisKey(entry.key)], [entry.token, entry.deleteAt, bytes, now, ttlMs]),
    );
    return written === 1;
  }

  async delete(key: string): Promise<boolean> {
    const removed = await this.connection.run("delete", (client) => client.del(this.redisKey(key)));
    return removed > 0;
  }
}
