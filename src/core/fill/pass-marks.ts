/**
 * Keys whose last answer could not be shared (`private`, `no-store`, a `Set-Cookie`, no
 * lifetime at all: a dynamic page), remembered for `memoryMs` so their misses stop waiting
 * on one another (a cache's hit-for-miss).
 *
 * Why: a miss waits for the key's one origin request. When that answer cannot be shared,
 * every waiter is then sent to the origin on its own, after the first round trip. On a busy
 * dynamic page every visitor but one waited twice the origin's time, and the waiters reached
 * the origin together. For a marked key, one miss at a time still fills as any miss does
 * (the origin's answer is stored if it can be now), and the misses that come meanwhile go to
 * the origin at once (relayed through the guard like any uncached request, so the origin's
 * cap holds), at most `maxRelays` of them per key at a time; past that they wait on the fill.
 *
 * A fill or relay whose answer could be shared ends the mark: a page that turns cacheable is
 * stored by the fill and collapsed again from then on. So an attacker who can make the origin
 * answer one of its requests uncacheable sends at most `maxRelays` more visitors' requests to
 * the origin with it, not every visitor's until the mark lapses.
 *
 * A Worker builds an engine per request: the isolate holds one of these for all of them.
 *
 * @example
 * const marks = new PassMarks(120_000, 8);
 * marks.mark(key, now); // the origin's answer was not shareable
 * const miss = marks.take(key, now); // { way: "fill" | "relay", done }: call done once answered
 */
export class PassMarks {
  private readonly marks = new Map<string, { until: number; relays: number; filling: boolean; rangesOnly: boolean }>();
  /** The keys' lengths summed: keys are URLs, and an attacker picks them. */
  private chars = 0;

  constructor(
    private readonly memoryMs: number,
    private readonly maxRelays: number,
    private readonly maxKeys = 10_000,
    private readonly maxChars = 2 * 1024 * 1024,
  ) {}

  /**
   * The origin's answer for `key` could not be shared: its misses go straight to it for a
   * while. `ranges`: its answer was shared but too large to keep (a stream no copy is made
   * of), so only its ranged misses go straight to it, with their Range; the others still
   * collapse onto the key's one fetch. The latest answer says which.
   */
  mark(key: string, now: number, which: "all" | "ranges" = "all"): void {
    if (this.memoryMs <= 0) return;
    const held = this.marks.get(key);
    if (held) {
      held.until = now + this.memoryMs;
      held.rangesOnly = which === "ranges";
      return;
    }
    this.marks.set(key, { until: now + this.memoryMs, relays: 0, filling: false, rangesOnly: which === "ranges" });
    this.chars += key.length;
    if (this.marks.size > this.maxKeys || this.chars > this.maxChars) this.trim(now);
  }

  /** An answer for `key` could be shared: its misses collapse again. */
  clear(key: string): void {
    if (this.marks.delete(key)) this.chars -= key.length;
  }

  /** Whether `key` is marked for all its misses (and its mark has not lapsed). */
  marked(key: string, now: number): boolean {
    const held = this.marks.get(key);
    return held !== undefined && held.until > now && !held.rangesOnly;
  }

  /**
   * How a miss of a marked `key` goes, with a function to call (once) when it was answered:
   * `fill`, the one miss at a time that fills as usual; `relay`, straight to the origin while
   * another fills. Undefined when `key` is not marked (or its mark lapsed), or when
   * `maxRelays` of its misses are at the origin already: the miss then waits on the fill.
   * A `ranged` miss (a client's Range) is relayed first, with its Range: the origin sends the
   * part alone, where a fill asks for the whole body and the part is cut from it (each seek
   * in a `no-store` video read the file from its start up to the seek); it fills only when
   * no relay is free. A key marked for its `ranges` only relays ranged misses (`large`: its
   * body is too large to keep), and leaves the others, and a ranged one with no relay free,
   * to the usual way.
   */
  take(
    key: string,
    now: number,
    ranged = false,
  ): { way: "fill" | "relay"; large: boolean; done: () => void } | undefined {
    const held = this.marks.get(key);
    if (!held) return undefined;
    if (held.until <= now) {
      this.clear(key);
      return undefined;
    }
    const large = held.rangesOnly;
    if (large) {
      if (!ranged || held.relays >= this.maxRelays) return undefined;
      held.relays++;
      return { way: "relay", large, done: once(() => held.relays--) };
    }
    if (!held.filling && !(ranged && held.relays < this.maxRelays)) {
      held.filling = true;
      return { way: "fill", large, done: once(() => (held.filling = false)) };
    }
    if (held.relays >= this.maxRelays) return undefined;
    held.relays++;
    return { way: "relay", large, done: once(() => held.relays--) };
  }

  /** Lapsed marks go first, then the oldest: a mark only saves time, losing one costs a wait. */
  private trim(now: number): void {
    for (const [key, held] of this.marks) if (held.until <= now) this.clear(key);
    for (const key of this.marks.keys()) {
      if (this.marks.size <= this.maxKeys && this.chars <= this.maxChars) return;
      this.clear(key);
    }
  }
}

function once(run: () => unknown): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    run();
  };
}
