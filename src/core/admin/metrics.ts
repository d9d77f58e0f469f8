import type { Clock } from "../clock.ts";
import { LatencyHistograms, observeIn, type Histogram } from "./latency.ts";

/** How a request was answered, for counting. */
export type ServeKind =
  "hit" | "stale" | "stale-if-error" | "miss" | "collapsed" | "bypass" | "pass" | "negative" | "error" | "refused";

export type OriginOutcomeKind = "200" | "304" | "other" | "5xx" | "error";

export const SERVE_KINDS: readonly ServeKind[] = [
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
export const ORIGIN_KINDS: readonly OriginOutcomeKind[] = ["200", "304", "other", "5xx", "error"];

/**
 * What the origin's protection did, besides the breaker's state: `backoff-answered`, requests
 * answered (stored copy or 503) while their key backed off; `backoff-started`, times a key
 * began backing off (its sick call, when it was not already waiting).
 */
export type ProtectionKind = "backoff-answered" | "backoff-started";
export const PROTECTION_KINDS: readonly ProtectionKind[] = ["backoff-answered", "backoff-started"];

export function zeroProtection(): Record<ProtectionKind, number> {
  return { "backoff-answered": 0, "backoff-started": 0 };
}
const WINDOW_SECONDS = 120;

/** One second of the live series: answers by kind and origin requests. */
export interface SecondCounts {
  at: number;
  served: Partial<Record<ServeKind, number>>;
  origin: number;
}

/** What the stats and the metrics endpoint show, whether one process's, one isolate's or a deployment's. */
export interface CounterView {
  served: Record<ServeKind, number>;
  origin: Record<OriginOutcomeKind, number>;
  /** Absent from a deployment whose stats object predates them. */
  protection?: Record<ProtectionKind, number>;
  /** Per-second series, oldest first, for the last two minutes. */
  series: SecondCounts[];
  topKeys: { key: string; requests: number }[];
}

export function zeroServed(): Record<ServeKind, number> {
  return Object.fromEntries(SERVE_KINDS.map((k) => [k, 0])) as Record<ServeKind, number>;
}

export function zeroOrigin(): Record<OriginOutcomeKind, number> {
  return Object.fromEntries(ORIGIN_KINDS.map((k) => [k, 0])) as Record<OriginOutcomeKind, number>;
}

export function requestsOf(served: Record<ServeKind, number>): number {
  return SERVE_KINDS.reduce((sum, kind) => sum + served[kind], 0);
}

export function originRequestsOf(origin: Record<OriginOutcomeKind, number>): number {
  return ORIGIN_KINDS.reduce((sum, kind) => sum + origin[kind], 0);
}

/** Share of cacheable requests answered without waiting on the origin. */
export function hitRatioOf(s: Record<ServeKind, number>): number {
  const answered = s.hit + s.stale + s["stale-if-error"] + s.negative;
  const cacheable = answered + s.miss + s.collapsed;
  return cacheable === 0 ? 0 : answered / cacheable;
}

/**
 * A monotonic millisecond timer for latencies (not the wall clock: it must not jump). Node
 * defines the `performance` global as a lazy getter, which every read of it calls: read once
 * here, not twice per request on the hit path.
 */
const monotonic = performance;
const performanceTimer: Clock = { now: () => monotonic.now() };

/**
 * One key's answers of one kind, counted by a hot path with {@link Metrics.countOn}: a plain
 * integer on the tally, folded into the totals, the per-second series and the key counts
 * when they are next read or when the second changes. Made by {@link Metrics.tally}.
 */
export interface Tally {
  readonly kind: ServeKind;
  readonly key: string;
  /** Answers counted since the last fold. */
  pending: number;
  /** The kind's latency histogram, observed into directly. */
  readonly latency: Histogram | undefined;
}

/** Keys whose requests are counted for the top keys; past them, the counts halve (halveKeyCounts). */
const COUNTED_KEYS = 10_000;

/**
 * Characters of a key the top keys keep: a longer key (a URL of kilobytes) is counted under
 * its first ones. The counters are outside every cache budget, and holding each key whole
 * let 2,700 requests for distinct 15 KB URLs fill a Node process's heap (sized from a
 * 64 MiB cache) and end it; 10,000 keys now hold at most ~5 MB of text.
 */
const COUNTED_KEY_CHARS = 512;

/**
 * `key`'s first {@link COUNTED_KEY_CHARS} characters and an ellipsis, as a string of its own:
 * V8 makes a slice (and a concatenation) refer to the string it came from, which would keep
 * the whole key alive behind its short name. Joining the characters copies them.
 */
function shortened(key: string): string {
  return [...key.slice(0, COUNTED_KEY_CHARS), "…"].join("");
}

/**
 * Counters of one process or isolate: served answers by kind, origin calls by outcome,
 * per-second series over the last two minutes for live charts, and latency histograms by
 * kind. Cheap on the hot path: a few integer increments, no allocation; cheaper still on a
 * {@link Tally}, whose counts are folded in when read (every reader sees the same numbers as
 * if each answer had been counted on its own).
 */
export class Metrics {
  private readonly totals: Record<ServeKind, number> = zeroServed();
  readonly origin: Record<OriginOutcomeKind, number> = zeroOrigin();
  readonly protection: Record<ProtectionKind, number> = zeroProtection();
  /** Time from arrival to the answer's head, by result; fed by requests that carry a start reading. */
  readonly latency = new LatencyHistograms(SERVE_KINDS);
  /** Requests per key, as one mutable count per key: a hit costs one lookup, not a get and a set. */
  private readonly keyCounts = new Map<string, { requests: number }>();
  private readonly seconds: SecondCounts[] = [];
  /**
   * Tallies with counts not folded in yet, in the order of their first count since the last
   * fold (the order their keys would have been first counted in). Their counts all belong to
   * the last second of {@link seconds}, `[openFrom, openFrom + 1000)`: a count outside it
   * folds them first.
   */
  private readonly dirty: Tally[] = [];
  private openFrom = Infinity;
  private openUntil = -Infinity;

  /**
   * @param clock the wall clock (series are per wall-clock second)
   * @param timer the latency timer, in milliseconds; `performance.now()` by default, tests pass a ManualClock
   */
  constructor(
    private readonly clock: Clock,
    private readonly timer: Clock = performanceTimer,
  ) {}

  /** Answers by kind since start. */
  get served(): Record<ServeKind, number> {
    this.fold();
    return this.totals;
  }

  /** A reading of the latency timer when a request arrives; pass it to {@link count} to time the request. */
  started(): number {
    return this.timer.now();
  }

  /**
   * Counts one answer. `at`, the wall-clock reading (`clock.now()`) the caller already made for
   * this request, saves reading the clock again for its second's bucket (the Node hit path).
   */
  count(kind: ServeKind, key?: string, startedAt?: number, at?: number): void {
    // Tallies first, so everything lands in the order it was counted.
    this.fold();
    this.totals[kind]++;
    const bucket = this.bucket(at);
    bucket.served[kind] = (bucket.served[kind] ?? 0) + 1;
    if (key !== undefined) this.countKey(key, 1);
    if (startedAt !== undefined) this.latency.observe(kind, (this.timer.now() - startedAt) / 1000);
  }

  /** A {@link Tally} for answers of `kind` to `key`, for {@link countOn}. */
  tally(kind: ServeKind, key: string): Tally {
    return { kind, key, pending: 0, latency: this.latency.of(kind) };
  }

  /**
   * {@link count}(tally.kind, tally.key, startedAt, at), for a hot path: an increment on the
   * tally; the totals, the series and the key count take it when next read or when a count
   * falls in another second. The latency is observed at once.
   */
  countOn(tally: Tally, at: number, startedAt?: number): void {
    if (at < this.openFrom || at >= this.openUntil) this.bucket(at);
    if (tally.pending++ === 0) this.dirty.push(tally);
    if (startedAt !== undefined && tally.latency) observeIn(tally.latency, (this.timer.now() - startedAt) / 1000);
  }

  protect(kind: ProtectionKind): void {
    this.protection[kind]++;
  }

  originCall(outcome: OriginOutcomeKind): void {
    this.fold();
    this.origin[outcome]++;
    this.bucket().origin++;
  }

  get requests(): number {
    return requestsOf(this.served);
  }

  get originRequests(): number {
    return originRequestsOf(this.origin);
  }

  /** Share of cacheable requests answered without waiting on the origin. */
  get hitRatio(): number {
    return hitRatioOf(this.served);
  }

  /** The most requested keys since start (bounded at 10,000 distinct keys, then counts halve to make room). */
  topKeys(limit = 10): { key: string; requests: number }[] {
    this.fold();
    return [...this.keyCounts]
      .map(([key, { requests }]) => ({ key, requests }))
      .sort((a, b) => b.requests - a.requests)
      .slice(0, limit);
  }

  /** Per-second series, oldest first, for the last two minutes. */
  series(): SecondCounts[] {
    this.fold();
    const cutoff = Math.floor(this.clock.now() / 1000) * 1000 - WINDOW_SECONDS * 1000;
    return this.seconds.filter((s) => s.at > cutoff);
  }

  /** These counters as the stats show them. */
  view(): CounterView {
    return {
      served: this.served,
      origin: this.origin,
      protection: this.protection,
      series: this.series(),
      topKeys: this.topKeys(10),
    };
  }

  private countKey(key: string, requests: number): void {
    const name = key.length > COUNTED_KEY_CHARS ? shortened(key) : key;
    const count = this.keyCounts.get(name);
    if (count !== undefined) count.requests += requests;
    else {
      if (this.keyCounts.size >= COUNTED_KEYS) this.halveKeyCounts();
      if (this.keyCounts.size < COUNTED_KEYS) this.keyCounts.set(name, { requests });
    }
  }

  /**
   * Full, the key counts halve and the keys left at 0 go: a key that turns hot after
   * 10,000 others were seen once (one client walking cold URLs) still reaches the top,
   * which a table closed to new keys never let it. A flood of distinct keys empties the
   * table at each halving (its keys hold 1), so the cost stays one pass per 10,000 keys.
   */
  private halveKeyCounts(): void {
    for (const [name, count] of this.keyCounts) {
      count.requests = Math.floor(count.requests / 2);
      if (count.requests === 0) this.keyCounts.delete(name);
    }
  }

  /** Adds the tallies' counts to the totals, their second (the last) and their keys. */
  private fold(): void {
    const { dirty } = this;
    if (dirty.length === 0) return;
    const second = this.seconds[this.seconds.length - 1]!;
    for (const tally of dirty) {
      const { kind, pending } = tally;
      tally.pending = 0;
      this.totals[kind] += pending;
      second.served[kind] = (second.served[kind] ?? 0) + pending;
      this.countKey(tally.key, pending);
    }
    dirty.length = 0;
  }

  private bucket(now = this.clock.now()): SecondCounts {
    const at = Math.floor(now / 1000) * 1000;
    let last = this.seconds[this.seconds.length - 1];
    if (!last || last.at !== at) {
      // The tallies' counts belong to the second that ends here.
      this.fold();
      last = { at, served: {}, origin: 0 };
      this.seconds.push(last);
      if (this.seconds.length > WINDOW_SECONDS) this.seconds.shift();
      this.openFrom = at;
      this.openUntil = at + 1000;
    }
    return last;
  }
}
