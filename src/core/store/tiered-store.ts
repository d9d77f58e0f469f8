import { withinMs } from "../within-ms.ts";
import type { Entry } from "../http/entry.ts";
import type { LruStore } from "./lru-store.ts";
import type { Store } from "./store.ts";

export interface TieredStoreOptions {
  /**
   * Writes the back store behind the caller: `put` resolves once memory holds the entry,
   * and hands the back write to this function, which starts it when it sees fit and keeps it
   * alive (ctx.waitUntil on Workers), so a response never waits on it. A back store that
   * refuses the entry (a newer one is there) takes it out of memory again. Default: `put`
   * waits for the back store's verdict.
   */
  writeBehind?: (write: () => Promise<unknown>) => void;
  /**
   * Back-store writes behind answers in flight, shared by the TieredStores of one memory tier:
   * the writes of one key run one after another, in the order they were handed over. The
   * back store's check of what it holds and its write are two steps (the Cache API has no
   * compare-and-set): run side by side, the write of a fill's copy, read before a `POST`'s
   * mark of that copy was written and written after it, undid the mark, and every other
   * isolate of the data center read the old page as fresh for its whole lifetime.
   */
  writes?: Map<string, Promise<unknown>>;
  /**
   * Back-store reads in flight, shared by the TieredStores of one memory tier (a Worker
   * builds one per request): concurrent misses of one key read the back store once and the
   * others wait on that read, each for at most `joinTimeoutMs` before reading for itself
   * (the read belongs to the request that started it, which the runtime may cancel).
   */
  sharedReads?: { running: Map<string, Promise<Entry | undefined>>; joinTimeoutMs: number };
  /**
   * Whether `key` is being fetched from the coordinator right now by another request that
   * shares this memory tier: a memory miss of such a key does not read the back store,
   * which lacks it (that is why it is being fetched) and gets it only after memory does.
   * The caller goes on to join that fetch. Under a spike on a cold key, the back store is
   * then read by the first requests only, not by every request until the entry lands.
   */
  fetching?: (key: string) => boolean;
  /**
   * Told of a back-store read that failed (the Cache API rejecting a `match`), which is
   * answered as a miss in this tier: the caller asks its coordinator, which holds the copy.
   */
  onBackError?: (error: unknown) => void;
}

/** How long a back-store write waits for the earlier writes of its key (a Cache API write takes milliseconds). */
const WRITE_JOIN_MS = 2_000;

/**
 * A small in-memory tier in front of a slower store (the Workers Cache API): reads try
 * memory first and copy what the back store returns into it; writes and deletes go to
 * both. `back` is opened only when memory misses, so a hit never touches it, and an entry
 * memory already holds (same key and fencing token: the requests of one flight all write
 * the entry they were given) is not written again.
 *
 * @example
 * const near = new TieredStore(isolateMemory, () => caches.open(name).then((c) => new CacheApiStore(c, clock)));
 */
export class TieredStore implements Store {
  private opened: Promise<Store> | undefined;

  constructor(
    private readonly front: LruStore,
    private readonly openBack: () => Promise<Store>,
    private readonly options: TieredStoreOptions = {},
  ) {}

  async get(key: string): Promise<Entry | undefined> {
    const hit = this.front.getSync(key);
    if (hit) return hit;
    if (this.options.fetching?.(key)) return undefined;
    const shared = this.options.sharedReads;
    const running = shared?.running.get(key);
    if (shared && running) {
      const joined = await withinMs(running, shared.joinTimeoutMs);
      if (joined.settled) return joined.value;
      // A slow read (50 cache.match at once on a loaded workerd took seconds), and meanwhile
      // this isolate began fetching the key: join that flight rather than read again (each
      // read of its own came back after the flight's body had ended, and asked the key's object again).
      if (this.options.fetching?.(key)) return undefined;
    }
    const read = this.readBack(key);
    if (!shared || running) return read;
    shared.running.set(key, read);
    try {
      return await read;
    } finally {
      if (shared.running.get(key) === read) shared.running.delete(key);
    }
  }

  /**
   * A failed read (of the back store, or its opening) is a miss here, never the request's
   * failure: the back store is a copy of what the coordinator holds. A Cache API that
   * rejected every `match` failed every request that missed memory (workerd's 500, 1101 on
   * Cloudflare), for as long as it rejected, on every key of the data center.
   */
  private async readBack(key: string): Promise<Entry | undefined> {
    let entry: Entry | undefined;
    try {
      entry = await (await this.back()).get(key);
    } catch (error) {
      this.options.onBackError?.(error);
      return undefined;
    }
    if (entry) await this.front.put(entry);
    return entry;
  }

  async put(entry: Entry): Promise<boolean> {
    const held = this.front.getSync(entry.key);
    const same = held?.token === entry.token && held.storedAt === entry.storedAt;
    // The same write again (one per flight); an invalidation's mark on the same entry is new.
    if (same && held.invalidatedAt === entry.invalidatedAt) return true;
    const { writeBehind } = this.options;
    if (!writeBehind) {
      const written = await (await this.back()).put(entry);
      // Memory follows the back store's verdict: a refused (older) entry must not shadow the newer one there.
      if (written) await this.front.put(entry);
      else await this.front.delete(entry.key);
      return written;
    }
    // Refused by memory while it still holds the key: a newer entry is there (one too large
    // for memory is refused and leaves nothing, and still goes to the back store).
    if (!(await this.front.put(entry)) && this.front.getSync(entry.key) !== undefined) return false;
    writeBehind(() =>
      this.afterWritesOf(entry.key, async () => {
        const written = await (await this.back()).put(entry);
        // Refused: out of memory again, unless memory holds a later write of the key (a mark made of it).
        const held = this.front.getSync(entry.key);
        if (!written && held?.token === entry.token && held.invalidatedAt === entry.invalidatedAt)
          await this.front.delete(entry.key);
      }),
    );
    return true;
  }

  /** Runs `write` once the back-store writes of `key` handed over before it are done (TieredStoreOptions.writes). */
  private afterWritesOf<T>(key: string, write: () => Promise<T>): Promise<T> {
    const writes = this.options.writes;
    if (!writes) return write();
    const before = writes.get(key);
    // Waited on for a bounded time: a write that hangs (or whose request the runtime ended) holds up no later one for good.
    const turn = before ? withinMs(before, WRITE_JOIN_MS).catch(() => undefined) : Promise.resolve();
    const running = turn.then(write);
    writes.set(key, running);
    const forget = () => {
      if (writes.get(key) === running) writes.delete(key);
    };
    running.then(forget, forget);
    return running;
  }

  /**
   * Deletes from both tiers; the back store's delete takes its turn behind the key's writes on
   * their way, or a write handed over before it (a fill's copy) landed after it and the copy
   * the caller dropped (an invalidation, a page gone private) answered again.
   */
  async delete(key: string): Promise<boolean> {
    const inFront = await this.front.delete(key);
    const inBack = await this.afterWritesOf(key, async () => (await this.back()).delete(key));
    return inFront || inBack;
  }

  private back(): Promise<Store> {
    const opened = (this.opened ??= this.openBack());
    // One that failed to open is opened again by the next use, not failed for good.
    opened.catch(() => {
      if (this.opened === opened) this.opened = undefined;
    });
    return opened;
  }
}
