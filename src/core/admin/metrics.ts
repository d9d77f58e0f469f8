import type { Clock } from "../clock.ts";

/** How a request was answered, for counting. */
export type ServeKind =
  "hit" | "stale" | "stale-if-error" | "miss" | "collapsed" | "bypass" | "pass" | "negative" | "error" | "refused";

export type OriginOutcomeKind = "200" | "304" | "other" | "5xx" | "error";

const SERVE_KINDS: ServeKind[] = [
  "hit",
  "stale",
  "stale-if-error",
  "miss",
  "collapsed",
  "bypass",
  "pass",
  "negative",
  "error",
  "refused",
];
const ORIGIN_KINDS: OriginOutcomeKind[] = ["200", "304", "other", "5xx", "error"];
const WINDOW_SECONDS = 120;

/**
 * Counters of one process or isolate: served answers by kind, origin calls by outcome, and
 * per-second series over the last two minutes for live charts. Cheap on the hot path: a
 * few integer increments.
 */
export class Metrics {
  readonly served: Record<ServeKind, number> = Object.fromEntries(SERVE_KINDS.map((k) => [k, 0])) as Record<
    ServeKind,
    number
  >;
  readonly origin: Record<OriginOutcomeKind, number> = Object.fromEntries(ORIGIN_KINDS.map((k) => [k, 0])) as Record<
    OriginOutcomeKind,
    number
  >;
  private readonly keyCounts = new Map<string, number>();
  private readonly seconds: { at: number; served: Partial<Record<ServeKind, number>>; origin: number }[] = [];

  constructor(private readonly clock: Clock) {}

  count(kind: ServeKind, key?: string): void {
    this.served[kind]++;
    this.bucket().served[kind] = (this.bucket().served[kind] ?? 0) + 1;
    if (key !== undefined) this.countKey(key);
  }

  originCall(outcome: OriginOutcomeKind): void {
    this.origin[outcome]++;
    this.bucket().origin++;
  }

  get requests(): number {
    return SERVE_KINDS.reduce((sum, kind) => sum + this.served[kind], 0);
  }

  get originRequests(): number {
    return ORIGIN_KINDS.reduce((sum, kind) => sum + this.origin[kind], 0);
  }

  /** Share of cacheable requests answered without waiting on the origin. */
  get hitRatio(): number {
    const s = this.served;
    const answered = s.hit + s.stale + s["stale-if-error"] + s.negative;
    const cacheable = answered + s.miss + s.collapsed;
    return cacheable === 0 ? 0 : answered / cacheable;
  }

  /** The most requested keys since start (bounded: counting is capped at 10,000 distinct keys). */
  topKeys(limit = 10): { key: string; requests: number }[] {
    return [...this.keyCounts]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([key, requests]) => ({ key, requests }));
  }

  /** Per-second series, oldest first, for the last two minutes. */
  series(): { at: number; served: Partial<Record<ServeKind, number>>; origin: number }[] {
    const cutoff = Math.floor(this.clock.now() / 1000) * 1000 - WINDOW_SECONDS * 1000;
    return this.seconds.filter((s) => s.at > cutoff);
  }

  private countKey(key: string): void {
    const count = this.keyCounts.get(key);
    if (count !== undefined) this.keyCounts.set(key, count + 1);
    else if (this.keyCounts.size < 10_000) this.keyCounts.set(key, 1);
  }

  private bucket() {
    const at = Math.floor(this.clock.now() / 1000) * 1000;
    let last = this.seconds[this.seconds.length - 1];
    if (!last || last.at !== at) {
      last = { at, served: {}, origin: 0 };
      this.seconds.push(last);
      if (this.seconds.length > WINDOW_SECONDS) this.seconds.shift();
    }
    return last;
  }
}
