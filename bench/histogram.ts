/**
 * A latency histogram with log-spaced buckets (about 2 % wide) from 1 µs to ~17 min:
 * constant memory whatever the request count, percentiles within one bucket's width. Up to
 * {@link EXACT_SAMPLES} samples it also keeps each one and its percentiles are exact: a
 * sequential scenario (100 cold misses) compares two p50s a few ms apart, where a bucket's
 * upper edge (0.5 ms at 25 ms) decided a ≤ 5 ms target by itself.
 *
 * @example
 * const h = new LatencyHistogram(); h.record(1234); h.percentileUs(0.99);
 */
export class LatencyHistogram {
  /** buckets per doubling: 2^(1/32) ≈ 2.2 % per bucket */
  static readonly PER_OCTAVE = 32;
  private readonly counts = new Float64Array(LatencyHistogram.PER_OCTAVE * 30);
  private total = 0;
  private sumUs = 0;
  private maxUs = 0;
  private samples: number[] | undefined = [];

  record(latencyUs: number): void {
    const us = Math.max(1, latencyUs);
    if (this.samples) {
      if (this.samples.length < EXACT_SAMPLES) this.samples.push(us);
      else this.samples = undefined;
    }
    const index = Math.min(this.counts.length - 1, Math.floor(Math.log2(us) * LatencyHistogram.PER_OCTAVE));
    this.counts[index] = (this.counts[index] ?? 0) + 1;
    this.total++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  get count(): number {
    return this.total;
  }

  /**
   * Quantile `q` (0..1) by nearest rank: the sample itself while every sample is kept, else
   * the upper edge of the bucket holding it, capped at the exact max.
   */
  percentileUs(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.total));
    if (this.samples) return [...this.samples].sort((a, b) => a - b)[rank - 1]!;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(this.maxUs, 2 ** ((i + 1) / LatencyHistogram.PER_OCTAVE));
    }
    return this.maxUs;
  }

  summary(): LatencySummary {
    return {
      count: this.total,
      meanMs: this.total === 0 ? 0 : round(this.sumUs / this.total / 1000),
      p50Ms: round(this.percentileUs(0.5) / 1000),
      p99Ms: round(this.percentileUs(0.99) / 1000),
      p999Ms: round(this.percentileUs(0.999) / 1000),
      maxMs: round(this.maxUs / 1000),
    };
  }
}

/** Samples kept for exact percentiles; past it only the buckets count (a load run's millions). */
export const EXACT_SAMPLES = 20_000;

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
