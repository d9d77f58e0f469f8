import type { Clock } from "../../core/clock.ts";
import { systemClock } from "../../core/clock.ts";
import type { Entry } from "../../core/http/entry.ts";
import { decodeEntry, encodeEntry, isUnreadableEntry } from "../../core/http/entry.ts";
import type { Store } from "../../core/store/store.ts";
import { concatBytes } from "../../core/http/http.ts";
import type { RedisConnection } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";
import { DEFAULT_SHARED_MAX_BYTES, StoreBound, chargedBytes, type Victim } from "./store-bound.ts";
import { formatRef, newChunkRef, parseRef, REDIS_CHUNK_BYTES, StoreChunks, type ChunkRef } from "./store-chunks.ts";
import { BackgroundWork } from "../../core/background-work.ts";
import { writableHere } from "./fill-news.ts";

export interface RedisStoreOptions {
  connection: RedisConnection;
  /**
   * The connection for chunk keys (bodies above {@link REDIS_CHUNK_BYTES}); default
   * `connection`. Megabytes in flight on the connection of the leases, the guard and the
   * heartbeat hold their small commands up past the command timeout on a busy process,
   * and that timeout counts as Redis being gone: the fleet went degraded mid-herd.
   */
  bulk?: RedisConnection;
  /** Namespace for every key, e.g. `"herdless:"`; lets deployments share one Redis. */
  prefix?: string;
  clock?: Clock;
  /**
   * What the entries may cost Redis together (`cache.sharedMaxBytes`); past it the entries
   * written longest ago are evicted (see {@link StoreBound}). Default {@link DEFAULT_SHARED_MAX_BYTES}.
   */
  maxBytes?: number;
  /** Hears a write or delete the bound could not record or evict for (the write itself stands). */
  onBoundError?: (error: unknown) => void;
}

/**
 * Fenced write. The entry lives in a hash `{ t: token, d: deleteAt, b: encoded entry }`,
 * or, for a chunked body, `{ t, d, m: encoded entry without its body, c: "<id> <chunks>
 * <bytes>" }` with the body in the keys `<prefix>chunk:<id>:<n>`; an invalidation's mark
 * (or a Vary pointer keeping one) also has `i: invalidatedAt`. The comparisons and the write
 * happen in one atomic step: a late writer with an older token never replaces a newer live
 * entry, and (RFC 9111 §4.4) an answer asked of the origin at or before the write a live mark
 * records never replaces that mark, however they interleave. The second is the fleet's: the
 * member that wrote noted the write in its memory (lookup.ts writtenWhileAsked), but a member
 * whose fill was running when the write succeeded may hear of it only after its answer came,
 * and its put, fenced by token alone, replaced the mark with the page as it was before the
 * write, fresh for its whole lifetime. Replies `{written, chunks it replaced}`.
 * KEYS[1] entry hash; ARGV: token, deleteAt, now, ttlMs, encoded, chunk ref ('' for `b`),
 * requestAt, invalidatedAt ('' for none).
 */
const PUT = new LuaScript(`
local current = redis.call('HMGET', KEYS[1], 't', 'd', 'c', 'i')
local live = current[2] and tonumber(current[2]) > tonumber(ARGV[3])
if live and current[1] and tonumber(current[1]) > tonumber(ARGV[1]) then
  return {0, ''}
end
if live and current[4] and tonumber(ARGV[7]) <= tonumber(current[4]) then
  if ARGV[8] == '' or tonumber(ARGV[8]) < tonumber(current[4]) then
    return {0, ''}
  end
end
local replaced = current[3] or ''
redis.call('DEL', KEYS[1])
if tonumber(ARGV[4]) <= 0 then
  return {1, replaced}
end
if ARGV[6] == '' then
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'd', ARGV[2], 'b', ARGV[5])
else
  redis.call('HSET', KEYS[1], 't', ARGV[1], 'd', ARGV[2], 'm', ARGV[5], 'c', ARGV[6])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'i', ARGV[8])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, replaced}
`);

/** Deletes an entry; replies its token and chunk ref, or nil when there was none. KEYS[1] entry hash. */
const DELETE = new LuaScript(`
local current = redis.call('HMGET', KEYS[1], 't', 'c')
if redis.call('DEL', KEYS[1]) == 0 then return nil end
return {current[1] or '0', current[2] or ''}
`);

/**
 * The shared tier of a Node fleet: a {@link Store} on Redis. Entries carry a physical
 * TTL (`deleteAt − now`) so Redis frees them by itself; reads also compare `deleteAt`
 * with the clock, so the store never serves past `deleteAt` even if Redis's clock lags.
 * Every failure surfaces as a HerdlessError with code COORDINATOR_UNAVAILABLE.
 *
 * A body up to {@link REDIS_CHUNK_BYTES} sits in the entry's hash (the layout every
 * herdless version reads); a larger one in chunk keys of that size, written before the
 * hash points at them, so no reader ever sees a partial body, and deleted once replaced.
 * A reader that finds a chunk gone (the entry was replaced meanwhile) reads again. An older
 * herdless reading a chunked entry finds no `b` and treats it as a miss.
 *
 * What the entries cost Redis together is bounded ({@link StoreBound}, `maxBytes`): a flood
 * of distinct URLs used to grow Redis for as long as the entries' physical TTL (a day).
 *
 * @example
 * const store = new RedisStore({ connection, prefix: "herdless:" });
 * await store.put(entry); await store.get(entry.key);
 */
export class RedisStore implements Store {
  private readonly connection: RedisConnection;
  private readonly chunks: StoreChunks;
  private readonly prefix: string;
  private readonly clock: Clock;
  /** The bound on what the entries cost Redis together, and its records. */
  readonly bound: StoreBound;
  private readonly onBoundError: (error: unknown) => void;
  /**
   * The read of each key in flight now, shared by every caller that asks meanwhile: at an
   * expiry each request of a process waiting on a key reads the same entry at once, and one
   * HMGET answers them all (without it the fleet's reads at expiry grew with its
   * connections, not its keys). A write or delete of the key lets go of its shared read,
   * both when it starts and when it ends, so a read asked for after a write completed is a
   * new one and sees it. Not SingleFlight: that one cannot be cut by a write.
   */
  private readonly reads = new Map<string, Promise<Entry | undefined>>();
  /** The bound's accounting of writes and deletes already answered ({@link settled}). */
  private readonly accounting = new BackgroundWork();

  constructor(options: RedisStoreOptions) {
    this.connection = options.connection;
    this.prefix = options.prefix ?? "herdless:";
    this.chunks = new StoreChunks(options.bulk ?? options.connection, this.prefix);
    this.clock = options.clock ?? systemClock;
    const maxBytes = options.maxBytes ?? DEFAULT_SHARED_MAX_BYTES;
    this.bound = new StoreBound({ connection: this.connection, prefix: this.prefix, maxBytes });
    this.onBoundError = options.onBoundError ?? (() => undefined);
  }

  /** The Redis key holding `key`'s entry (exposed for operators and tests). */
  redisKey(key: string): string {
    return `${this.prefix}entry:${key}`;
  }

  get(key: string): Promise<Entry | undefined> {
    const shared = this.reads.get(key);
    if (shared) return shared;
    const read = this.readEntry(key).finally(() => this.forgetRead(key, read));
    this.reads.set(key, read);
    return read;
  }

  /**
   * Lets go of every shared read in flight: a read asked for after this is sent after it.
   * The fleet calls it as it sends a lease acquire, so a flight's look under the lease, sent
   * beside the acquire, is answered as of after it (KeyCoordinatorOptions.readsFollowAcquire),
   * never by a read another caller sent before it.
   */
  cutReads(): void {
    this.reads.clear();
  }

  private async readEntry(key: string): Promise<Entry | undefined> {
    // A chunked body replaced while we read it: the second read sees the new entry.
    for (let attempt = 0; attempt < 2; attempt++) {
      const read = await this.read(key);
      if (read !== "replaced") return read;
    }
    return undefined;
  }

  /** Drops the shared read of `key` (only `read`, when given: a newer one stays). */
  private forgetRead(key: string, read?: Promise<Entry | undefined>): void {
    if (read === undefined || this.reads.get(key) === read) this.reads.delete(key);
  }

  async put(entry: Entry): Promise<boolean> {
    this.forgetRead(entry.key);
    try {
      return await this.write(entry);
    } finally {
      this.forgetRead(entry.key);
    }
  }

  private async write(entry: Entry): Promise<boolean> {
    const now = this.clock.now();
    const ttlMs = Math.ceil(entry.deleteAt - now);
    const chunked = entry.body.byteLength > REDIS_CHUNK_BYTES && ttlMs > 0;
    const ref: ChunkRef | undefined = chunked ? newChunkRef(entry.body.byteLength) : undefined;
    if (ref) await this.chunks.write(ref, entry.body, ttlMs);
    const encoded = encodeEntry(ref ? { ...entry, body: new Uint8Array(0) } : entry);
    const bytes = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    const reply = (await this.connection.run("put", (client) =>
      PUT.run(
        client,
        [this.redisKey(entry.key)],
        [
          entry.token,
          entry.deleteAt,
          now,
          ttlMs,
          bytes,
          ref ? formatRef(ref) : "",
          entry.requestAt,
          entry.invalidatedAt ?? "",
        ],
      ),
    )) as [number, string];
    const written = reply[0] === 1;
    // Fenced out: our chunks are nobody's; written: the replaced entry's chunks are nobody's.
    const orphan = written ? parseRef(reply[1]) : ref;
    await this.chunks.delete(orphan);
    if (!written) return false;
    const charged = chargedBytes(entry.key, bytes.byteLength, ref?.chunks ?? 0, ref?.bytes ?? 0);
    const write = { key: entry.key, bytes: charged, writtenAt: now, deleteAt: entry.deleteAt, token: entry.token };
    this.behind(ttlMs > 0 ? this.bound.record(write, now) : this.bound.forget(entry.key, entry.token, now));
    return true;
  }

  /** Resolves once the bound accounted for every write and delete so far (before closing; tests). */
  async settled(): Promise<void> {
    await this.accounting.settled();
  }

  /**
   * Accounts behind the answer: a fill's clients need not wait on the records (a script, and
   * evictions in a flood). Sent at once, on one connection: in the order of the writes.
   */
  private behind(recorded: Promise<Victim[]>): void {
    void this.accounting.add(this.account(recorded).catch((error: unknown) => this.onBoundError(error)));
  }

  /**
   * Evicts the victims of a write or delete past the bound. Never fails the write, which is
   * done: a recording lost while Redis went away only leaves that entry uncounted until it
   * expires (StoreBound).
   */
  private async account(recorded: Promise<Victim[]>): Promise<void> {
    const victims = await recorded.catch((error: unknown) => {
      this.onBoundError(error);
      return [];
    });
    await Promise.all(
      victims.map(async (victim) => {
        this.forgetRead(victim.key);
        const ref = await this.bound.evict(victim, this.redisKey(victim.key)).catch((error: unknown) => {
          this.onBoundError(error);
          return undefined;
        });
        await this.chunks.delete(parseRef(ref ?? ""));
      }),
    );
  }

  async delete(key: string): Promise<boolean> {
    this.forgetRead(key);
    try {
      return await this.remove(key);
    } finally {
      this.forgetRead(key);
    }
  }

  private async remove(key: string): Promise<boolean> {
    const removed = (await this.connection.run("delete", (client) => DELETE.run(client, [this.redisKey(key)], []))) as
      [string, string] | null;
    if (!removed) return false;
    await this.chunks.delete(parseRef(removed[1]));
    // Off the records too, or a purged or invalidated key would count until its deleteAt; only
    // the record of the write deleted: a write made since (recorded already) stays counted.
    this.behind(this.bound.forget(key, Number(removed[0]), this.clock.now()));
    return true;
  }

  private async read(key: string): Promise<Entry | undefined | "replaced"> {
    const [whole, meta, refText] = await this.connection.run("get", (client) =>
      client.hmgetBuffer(this.redisKey(key), "b", "m", "c"),
    );
    let entry: Entry;
    try {
      if (whole) {
        entry = decodeEntry(new Uint8Array(whole.buffer, whole.byteOffset, whole.byteLength));
      } else {
        const ref = parseRef(refText?.toString("utf8") ?? "");
        if (!meta || !ref) return undefined;
        const parts = await this.chunks.read(ref);
        if (parts === "gone") return "replaced";
        if (parts === "damaged") return undefined;
        const body = concatBytes(parts, ref.bytes);
        entry = { ...decodeEntry(new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength)), body };
      }
    } catch (error) {
      // An entry written by another format version (rolling deploy) or damaged is a miss:
      // the cache must never fail a request because of what it holds.
      if (isUnreadableEntry(error)) return undefined;
      throw error;
    }
    // An entry that names another key is damaged (every write files an entry under its own
    // key): served, it would be another page's answer.
    if (entry.key !== key) return undefined;
    // Not deleted here: under a real clock another process may be writing a newer entry,
    // and the physical TTL removes this one anyway.
    return this.clock.now() >= entry.deleteAt || !writableHere(entry) ? undefined : entry;
  }
}
