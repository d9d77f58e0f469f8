import type { Entry } from "../http/entry.ts";
import type { LruStore } from "./lru-store.ts";
import type { Store } from "./store.ts";

/**
 * A small in-memory tier in front of a slower store (the Workers Cache API): reads try
 * memory first and copy what the back store returns into it; writes and deletes go to
 * both. `back` is opened only when memory misses, so a hit never touches it.
 *
 * @example
 * const near = new TieredStore(isolateMemory, () => caches.open(name).then((c) => new CacheApiStore(c, clock)));
 */
export class TieredStore implements Store {
  private opened: Promise<Store> | undefined;

  constructor(
    private readonly front: LruStore,
    private readonly openBack: () => Promise<Store>,
  ) {}

  async get(key: string): Promise<Entry | undefined> {
    const hit = this.front.getSync(key);
    if (hit) return hit;
    const entry = await (await this.back()).get(key);
    if (entry) await this.front.put(entry);
    return entry;
  }

  async put(entry: Entry): Promise<boolean> {
    const written = await (await this.back()).put(entry);
    // Memory follows the back store's verdict: a refused (older) entry must not shadow the newer one there.
    if (written) await this.front.put(entry);
    else await this.front.delete(entry.key);
    return written;
  }

  async delete(key: string): Promise<boolean> {
    const inFront = await this.front.delete(key);
    const inBack = await (await this.back()).delete(key);
    return inFront || inBack;
  }

  private back(): Promise<Store> {
    return (this.opened ??= this.openBack());
  }
}
