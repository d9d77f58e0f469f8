/**
 * In-process single-flight: concurrent calls for one key share one execution of `fn`.
 *
 * Contract: while a call for `key` is running, every further call for `key` joins it and
 * receives the same result, or the same error; once it settles (either way) the key is
 * free again, so a thrown error never wedges it. `joined` tells a caller whether it rode
 * on someone else's call (Cache-Status `collapsed`).
 *
 * @example
 * const flights = new SingleFlight<string, Entry>();
 * const { value, joined } = await flights.run(key, () => fetchAndStore(key));
 */
export class SingleFlight<K, V> {
  private readonly inFlight = new Map<K, Promise<V>>();

  async run(key: K, fn: () => Promise<V>): Promise<{ value: V; joined: boolean }> {
    const existing = this.inFlight.get(key);
    if (existing) return { value: await existing, joined: true };
    // Deferred one microtask so the map holds the promise before `fn` can settle, even
    // when `fn` throws synchronously.
    const promise = Promise.resolve()
      .then(fn)
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return { value: await promise, joined: false };
  }

  /** Whether a call for `key` is running now. */
  has(key: K): boolean {
    return this.inFlight.has(key);
  }

  get size(): number {
    return this.inFlight.size;
  }
}
