import type { Clock } from "../clock.ts";
import { systemClock } from "../clock.ts";
import type { Entry } from "../http/entry.ts";
import { entrySize } from "../http/entry.ts";
import { HerdlessError } from "../errors.ts";
import type { Store } from "./store.ts";

export interface LruStoreOptions {
  /** Byte budget, charged with `entrySize` (body + headers + fixed overhead), not an entry count. */
  maxBytes: number;
  clock?: Clock;
}

interface Slot {
  entry: Entry;
  size: number;
  /** When it was put, or last confirmed ({@link LruStore.claimReread}). */
  placedAt: number;
}

/**
 * The per-process near tier: a {@link Store} bounded by bytes that evicts the least
 * recently used entry. A Map keeps insertion order, so moving an entry to the end on
 * every read makes the first key the least recently used and every operation O(1).
 *
 * @example
 * const lru = new LruStore({ maxBytes: 64 * 1024 * 1024 });
 * const hit = lru.getSync(key); // the Node hit path: no promise per request
 */
export class LruStore implements Store {
  private readonly slots = new Map<string, Slot>();
  private readonly maxBytes: number;
  private readonly clock: Clock;
  private charged = 0;
  private evicted = 0;
  /**
   * The most recently used key (last in the map's order), or undefined when not known. A hit
   * on it needs no move to the back: a hot key's hits on the Node hit path would otherwise
   * delete and re-insert it every time, and the map's table, filling with deleted slots, is
   * rebuilt every few hits (an allocation and a copy).
   */
  private newest: string | undefined;

  constructor(options: LruStoreOptions) {
    if (!(Number.isFinite(options.maxBytes) && options.maxBytes > 0)) {
      throw new HerdlessError(
        "CONFIG_INVALID",
        `LruStore: maxBytes must be a positive number of bytes, got ${String(options.maxBytes)}`,
      );
    }
    this.maxBytes = options.maxBytes;
    this.clock = options.clock ?? systemClock;
  }

  /** Entries held. */
  get size(): number {
    return this.slots.size;
  }

  /** Bytes charged against `maxBytes`; never above it. */
  get bytes(): number {
    return this.charged;
  }

  /** Entries dropped to make room (expiry and deletes are not counted). */
  get evictions(): number {
    return this.evicted;
  }

  /**
   * The synchronous read behind {@link get}; refreshes recency, drops an expired entry. `now`,
   * a reading of this store's clock the caller already made for the request (the Node hit
   * path), saves reading it again: a clock read is 0.1–0.2 µs of a ~30 µs hit.
   */
  getSync(key: string, now?: number): Entry | undefined {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    if ((now ?? this.clock.now()) >= slot.entry.deleteAt) {
      this.remove(key, slot);
      return undefined;
    }
    if (key !== this.newest) {
      this.slots.delete(key);
      this.slots.set(key, slot);
      this.newest = key;
    }
    return slot.entry;
  }

  async get(key: string): Promise<Entry | undefined> {
    return this.getSync(key);
  }

  /**
   * Whether the copy under `key` was put (or confirmed) at least `afterMs` ago, when this store
   * fronts one other processes write too (the Worker's isolate memory before its data center's
   * Cache API, where another isolate's invalidation or newer copy lands). Due once per
   * `afterMs`: the copy counts as confirmed now, so one of the requests that ask reads the
   * shared store again (and hands what it finds to {@link putReread}) while the copy goes on
   * answering. The copy held, when due.
   */
  claimReread(key: string, afterMs: number, now: number): Entry | undefined {
    const slot = this.slots.get(key);
    if (!slot || now - slot.placedAt < afterMs) return undefined;
    slot.placedAt = now;
    return slot.entry;
  }

  /**
   * What a re-read of the shared store found under `found.key`, for `held`, the copy this store
   * held when the read began ({@link claimReread}). Nothing if this process wrote the key while
   * the read ran (an unsafe request's invalidation mark, a fill, a drop): what it wrote is newer
   * than anything the read can have seen, whose answer may predate the write by seconds on a
   * loaded runtime: put back over the mark of a POST through this process (same token), the
   * copy the POST had just invalidated answered as fresh again. And an invalidation's mark that
   * covers `held` replaces it whatever its token: one made where the shared store had let the
   * copy go carries none (0), and a lower token kept memory's copy answering for its lifetime.
   */
  async putReread(found: Entry, held: Entry): Promise<boolean> {
    const slot = this.slots.get(found.key);
    if (slot?.entry !== held) return false;
    if (found.invalidatedAt !== undefined && found.invalidatedAt >= held.storedAt && found.token < held.token)
      this.remove(found.key, slot);
    return this.put(found);
  }

  /**
   * Writes unless a live entry carries a higher token. An entry larger than the whole
   * budget is refused (false); the older entry it was meant to replace is dropped even
   * so, because a newer response for the key exists and the old one must not outlive it.
   */
  async put(entry: Entry): Promise<boolean> {
    const current = this.slots.get(entry.key);
    const now = this.clock.now();
    if (current) {
      const live = now < current.entry.deleteAt;
      if (live && current.entry.token > entry.token) {
        // A shared store read back is behind this copy (its write still on the way): this
        // one stays the answer, confirmed as of now.
        current.placedAt = now;
        return false;
      }
      this.remove(entry.key, current);
    }
    const size = entrySize(entry);
    if (size > this.maxBytes) return false;
    this.slots.set(entry.key, { entry, size, placedAt: now });
    this.newest = entry.key;
    this.charged += size;
    this.evictUntilWithinBudget();
    return true;
  }

  async delete(key: string): Promise<boolean> {
    const slot = this.slots.get(key);
    if (!slot) return false;
    this.remove(key, slot);
    return true;
  }

  private evictUntilWithinBudget(): void {
    let spared = 0;
    while (this.charged > this.maxBytes) {
      // The first key in insertion order is the least recently used.
      const oldest = this.slots.entries().next();
      if (oldest.done) return;
      const [key, slot] = oldest.value;
      // An invalidation's mark over a Vary'd URL hides variants no store can list
      // (lookup.ts invalidateStored): evicted before them, it would let them be served again
      // once a fill rewrites the pointer. It is bodiless, so it goes last, after one pass.
      if (isVaryMark(slot.entry) && spared < this.slots.size) {
        this.slots.delete(key);
        this.slots.set(key, slot);
        this.newest = key;
        spared += 1;
        continue;
      }
      this.remove(key, slot);
      this.evicted += 1;
    }
  }

  private remove(key: string, slot: Slot): void {
    this.slots.delete(key);
    if (key === this.newest) this.newest = undefined;
    this.charged -= slot.size;
  }
}

function isVaryMark(entry: Entry): boolean {
  return entry.invalidatedAt !== undefined && entry.vary.length > 0;
}
