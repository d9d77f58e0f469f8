/**
 * Marks the keys an edge is refreshing in the background, so that engines sharing the edge
 * start one refresh per key, not one per request. A Worker builds an engine per request,
 * and a promise cannot be shared across its requests (the runtime cancels it for the others
 * when the request that made it ends), so this holds no promise: a request that finds the
 * key marked simply does not start a refresh. A mark lapses after `ttlMs` in case its
 * refresh never reports back (a cancelled `waitUntil`), and at most `maxKeys` are kept.
 *
 * @example
 * const marks = new RefreshMarks(20_000);
 * if (marks.begin(key, clock.now())) void refresh(key).finally(() => marks.end(key));
 */
export class RefreshMarks {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** True when the caller should refresh `key` (and now holds its mark). */
  begin(key: string, now: number): boolean {
    const until = this.until.get(key);
    if (until !== undefined && until > now) return false;
    if (this.until.size >= this.maxKeys) this.sweep(now);
    // Full of live marks: refresh unmarked rather than grow (the coordinator still collapses).
    if (this.until.size < this.maxKeys) this.until.set(key, now + this.ttlMs);
    return true;
  }

  end(key: string): void {
    this.until.delete(key);
  }

  private sweep(now: number): void {
    for (const [key, until] of this.until) if (until <= now) this.until.delete(key);
  }
}
