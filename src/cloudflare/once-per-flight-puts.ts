import type { Entry } from "../core/http/entry.ts";
import type { Store } from "../core/store/store.ts";

/** Writes of one entry (key and token) in flight in this isolate, per cache. */
const putsInFlight = new Set<string>();

/**
 * The near tier with concurrent identical writes collapsed: every caller that joined one
 * coordinator flight gets the same entry and writes it back at the same moment, and a
 * Cache API write costs far more than a read. Only writes in flight are remembered, so
 * an entry the cache later evicts is written again by the next caller.
 */
export class OncePerFlightPuts implements Store {
  constructor(
    private readonly inner: Store,
    private readonly cacheName: string,
  ) {}

  get(key: string): Promise<Entry | undefined> {
    return this.inner.get(key);
  }

  async put(entry: Entry): Promise<boolean> {
    const id = JSON.stringify([this.cacheName, entry.key, entry.token]);
    if (putsInFlight.has(id)) return true;
    putsInFlight.add(id);
    try {
      return await this.inner.put(entry);
    } finally {
      putsInFlight.delete(id);
    }
  }

  delete(key: string): Promise<boolean> {
    return this.inner.delete(key);
  }
}
