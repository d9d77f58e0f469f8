/**
 * Upper bounds (seconds) of the latency buckets: from a memory hit (~0.1 ms) to an origin
 * at its timeout (tens of seconds). Prometheus adds `+Inf`.
 */
export const LATENCY_BUCKETS_SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
] as const;

/** One result's histogram: per-bucket counts (not cumulative; the last slot is `+Inf`), their sum and count. */
export interface Histogram {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * Latency histograms, one per result (`hit`, `miss`, `collapsed`…). Everything is allocated
 * up front: observing is a scan of 17 bounds and three additions, no allocation, so it can
 * sit on the hit path.
 *
 * @example
 * const latency = new LatencyHistograms(["hit", "miss"]);
 * latency.observe("hit", 0.0003);
 */
export class LatencyHistograms<K extends string> {
  private readonly byKind = new Map<K, Histogram>();

  constructor(kinds: readonly K[]) {
    for (const kind of kinds)
      this.byKind.set(kind, { buckets: new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1), sum: 0, count: 0 });
  }

  observe(kind: K, seconds: number): void {
    const histogram = this.byKind.get(kind);
    if (histogram) observeIn(histogram, seconds);
  }

  /** `kind`'s histogram, for a caller that observes into it with {@link observeIn} (no lookup per observation). */
  of(kind: K): Histogram | undefined {
    return this.byKind.get(kind);
  }

  /** Each result's histogram, in the order the kinds were given. */
  entries(): IterableIterator<[K, Readonly<Histogram>]> {
    return this.byKind.entries();
  }
}

/** Adds one observation of `seconds` to `histogram` (one of {@link LatencyHistograms.of}). */
export function observeIn(histogram: Histogram, seconds: number): void {
  let i = 0;
  while (i < LATENCY_BUCKETS_SECONDS.length && seconds > LATENCY_BUCKETS_SECONDS[i]!) i++;
  histogram.buckets[i] = (histogram.buckets[i] ?? 0) + 1;
  histogram.sum += seconds;
  histogram.count++;
}
