import type { Clock } from "../clock.ts";
import type { Entry } from "../http/entry.ts";
import type { Store } from "./store.ts";

/**
 * An unbounded in-memory {@link Store}, for tests and as the reference implementation of
 * the contract. Bounded stores (the Node LRU) live in their runtime folder.
 */
export class MemoryStore implements Store {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly clock: Clock) {}

  async get(key: string): Promise<Entry | undefined> {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (this.clock.now() >= entry.deleteAt) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  async put(entry: Entry): Promise<boolean> {
    const current = this.entries.get(entry.key);
    if (current && current.token > entry.token && this.clock.now() < current.deleteAt) return false;
    this.entries.set(entry.key, entry);
    return true;
  }

  async delete(key: string): Promise<boolean> {
    return this.entries.delete(key);
  }
}
