import type { Clock } from "../clock.ts";
import type { DeploymentView, IsolateReport } from "./deployment-stats.ts";
import {
  SERVE_KINDS,
  zeroOrigin,
  zeroProtection,
  zeroServed,
  type Metrics,
  type SecondCounts,
  type ServeKind,
} from "./metrics.ts";

export interface StatsReporterOptions {
  metrics: Metrics;
  clock: Clock;
  /** At most one report per this many milliseconds from request traffic (`admin.statsReportIntervalMs`). */
  intervalMs: number;
  /** Delivers a report to the one place that sums them and answers with the deployment's view. */
  send(report: IsolateReport): Promise<DeploymentView>;
  /** Hears background reports that failed (what they carried goes with the next one). */
  onError(error: unknown): void;
}

const MAX_KEY_CHARS = 512;

/**
 * Reports one isolate's counters to the deployment's stats object, off the request path
 * and at a bounded rate: the first request after each interval starts a report in the
 * background, carrying everything counted since the last acknowledged one, so an isolate
 * sends at most one report per interval from its traffic and nothing is lost while it keeps
 * serving. A stats read sends one more, to read the totals back with this isolate's current.
 *
 * @example
 * const reporter = new StatsReporter({ metrics, clock, intervalMs: 10_000, send, onError });
 * const report = reporter.afterRequest();
 * if (report) ctx.waitUntil(report);
 */
export class StatsReporter {
  readonly isolate = crypto.randomUUID();
  private readonly startedAt: number;
  private seq = 0;
  private acked: {
    seq: number;
    served: Record<ServeKind, number>;
    origin: IsolateReport["origin"];
    protection: NonNullable<IsolateReport["protection"]>;
    /** The newest second of the series in that report, as it was then. */
    second: SecondCounts | undefined;
  } = { seq: 0, served: zeroServed(), origin: zeroOrigin(), protection: zeroProtection(), second: undefined };
  /** No report from traffic before this instant. */
  private nextAt = 0;
  private previous: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: StatsReporterOptions) {
    this.startedAt = o.clock.now();
  }

  /**
   * Call after each counted request. Usually nothing to do (one clock read, one comparison:
   * undefined); once an interval has passed since the last report, the next one, to keep
   * alive in the background (`ctx.waitUntil`). `start` decides when that report is sent
   * (default: at once), e.g. after the request's answer has gone.
   */
  afterRequest(start: (send: () => Promise<void>) => Promise<void> = (send) => send()): Promise<void> | undefined {
    const now = this.o.clock.now();
    if (now < this.nextAt) return undefined;
    this.nextAt = now + this.o.intervalMs;
    return start(() =>
      this.report().then(
        () => undefined,
        (error: unknown) => this.o.onError(error),
      ),
    );
  }

  /** Reports now and answers the deployment's view; rejects when the stats object cannot be reached. */
  report(): Promise<DeploymentView> {
    this.nextAt = Math.max(this.nextAt, this.o.clock.now() + this.o.intervalMs);
    // One report at a time: each is built once the one before was acknowledged, so the
    // series it carries never overlap.
    const run = this.previous.then(() => this.send());
    this.previous = run.catch(() => undefined);
    return run;
  }

  private async send(): Promise<DeploymentView> {
    const { report, newest } = this.build(this.o.clock.now());
    const view = await this.o.send(report);
    this.acked = {
      seq: report.seq,
      served: report.served,
      origin: report.origin,
      protection: report.protection ?? zeroProtection(),
      second: newest,
    };
    return view;
  }

  private build(now: number): { report: IsolateReport; newest: SecondCounts | undefined } {
    const m = this.o.metrics;
    const since = this.acked.second;
    const series: SecondCounts[] = [];
    let newest: SecondCounts | undefined;
    for (const second of m.series()) {
      if (since && second.at < since.at) continue;
      newest = { at: second.at, served: { ...second.served }, origin: second.origin };
      const increment = since && second.at === since.at ? minus(second, since) : newest;
      if (increment.origin > 0 || Object.keys(increment.served).length > 0) series.push(increment);
    }
    const report: IsolateReport = {
      v: 1,
      isolate: this.isolate,
      seq: ++this.seq,
      startedAt: this.startedAt,
      at: now,
      served: { ...m.served },
      origin: { ...m.origin },
      protection: { ...m.protection },
      acknowledged: { served: this.acked.served, origin: this.acked.origin, protection: this.acked.protection },
      series,
      topKeys: m.topKeys(10).map(({ key, requests }) => ({
        key: key.length > MAX_KEY_CHARS ? key.slice(0, MAX_KEY_CHARS) : key,
        requests,
      })),
    };
    return { report, newest };
  }
}

function minus(now: SecondCounts, then: SecondCounts): SecondCounts {
  const served: SecondCounts["served"] = {};
  for (const kind of SERVE_KINDS) {
    const n = (now.served[kind] ?? 0) - (then.served[kind] ?? 0);
    if (n > 0) served[kind] = n;
  }
  return { at: now.at, served, origin: Math.max(0, now.origin - then.origin) };
}
