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
 * marks.renewing(key, clock.now()); // the expiry of the copy a refresh-ahead renews (refresh-ahead.ts)
 */
export class RefreshMarks {
  private readonly marks = new Map<string, { renews: number | undefined; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /**
   * True when the caller should refresh `key` (and now holds its mark). `renews` is the
   * expiry of the copy a refresh-ahead renews, for {@link renewing}.
   */
  begin(key: string, now: number, renews?: number): boolean {
    if (this.running(key, now)) return false;
    if (this.marks.size >= this.maxKeys) this.sweep(now);
    // Full of live marks: refresh unmarked rather than grow (the coordinator still collapses).
    if (this.marks.size < this.maxKeys) this.marks.set(key, { renews, until: now + this.ttlMs });
    return true;
  }

  /** Whether a refresh of `key` runs (its mark is held and has not lapsed). */
  running(key: string, now: number): boolean {
    const mark = this.marks.get(key);
    return mark !== undefined && mark.until > now;
  }

  /** The expiry of the copy that a running refresh-ahead of `key` renews; undefined when none runs (or its mark lapsed). */
  renewing(key: string, now: number): number | undefined {
    const mark = this.marks.get(key);
    return mark !== undefined && mark.until > now ? mark.renews : undefined;
  }

  end(key: string): void {
    this.marks.delete(key);
  }

  private sweep(now: number): void {
    for (const [key, mark] of this.marks) if (mark.until <= now) this.marks.delete(key);
  }
}
