import {
  ORIGIN_KINDS,
  PROTECTION_KINDS,
  SERVE_KINDS,
  zeroOrigin,
  zeroProtection,
  zeroServed,
  type CounterView,
  type OriginOutcomeKind,
  type ProtectionKind,
  type SecondCounts,
  type ServeKind,
} from "./metrics.ts";

/**
 * What an isolate sends the deployment's stats object, at most once per report interval:
 * one small message. Counters are cumulative since the isolate started, with the values of
 * its last acknowledged report, so the object adds exactly what is new even when a report
 * is repeated (an answer lost on the way back) or the object lost its memory of the isolate.
 */
export interface IsolateReport {
  v: 1;
  /** A random id per isolate. */
  isolate: string;
  /** Numbers the isolate's reports 1, 2, 3…; a report the object already has is not added twice. */
  seq: number;
  startedAt: number;
  /** The isolate's clock when it built the report. */
  at: number;
  served: Record<ServeKind, number>;
  origin: Record<OriginOutcomeKind, number>;
  /** Absent from isolates of a version before it. */
  protection?: Record<ProtectionKind, number>;
  /** The counters of the isolate's last report the object acknowledged (zeros at first). */
  acknowledged: {
    served: Record<ServeKind, number>;
    origin: Record<OriginOutcomeKind, number>;
    protection?: Record<ProtectionKind, number>;
  };
  /**
   * The live series since the last acknowledged report, as increments (the second that
   * report was in carries only what came after it). The chart is approximate where counters
   * are exact: an acknowledgement lost on the way back counts those seconds twice.
   */
  series: SecondCounts[];
  /** The isolate's most requested keys since it started (at most 10, keys cut at 512 characters). */
  topKeys: { key: string; requests: number }[];
}

/** One isolate as the stats object last heard from it. */
export interface ReporterView {
  isolate: string;
  startedAt: number;
  /** The isolate's clock at its last report. */
  reportedAt: number;
  /** Reports the object received from it. */
  reports: number;
  /** Requests it answered, as of its last report. */
  requests: number;
}

/** The deployment's counters and who contributed them. */
export interface DeploymentView extends CounterView {
  /** Isolates that reported in the last ten minutes. */
  isolates: number;
  newestReportAt: number;
  oldestReportAt: number;
  /** Those isolates, most recent report first (at most 20). */
  reporters: ReporterView[];
}

/** The part of the totals kept in durable storage, so the deployment's counters never go back. */
export interface SavedTotals {
  v: 1;
  served: Record<ServeKind, number>;
  origin: Record<OriginOutcomeKind, number>;
  /** Absent from totals saved before it. */
  protection?: Record<ProtectionKind, number>;
}

/** An isolate not heard from for this long is forgotten (its counts stay in the totals). */
export const FORGET_ISOLATE_MS = 10 * 60_000;
const WINDOW_MS = 120_000;
const MAX_REPORTERS_SHOWN = 20;
const TOP_KEYS = 10;

interface Known {
  startedAt: number;
  reportedAt: number;
  reports: number;
  served: Record<ServeKind, number>;
  origin: Record<OriginOutcomeKind, number>;
  protection: Record<ProtectionKind, number>;
  /** The newest report added. */
  seq: number;
  topKeys: { key: string; requests: number }[];
}

/**
 * The deployment's counters, summed from isolate reports; runtime-free (the Worker's
 * StatsObject holds one and saves {@link SavedTotals}).
 *
 * @example
 * const totals = new DeploymentTotals(await storage.get("totals"));
 * totals.add(report);
 * await storage.put("totals", totals.saved());
 */
export class DeploymentTotals {
  private readonly served: Record<ServeKind, number>;
  private readonly origin: Record<OriginOutcomeKind, number>;
  private readonly protection: Record<ProtectionKind, number>;
  private readonly isolates = new Map<string, Known>();
  private readonly seconds = new Map<number, SecondCounts>();
  private newestAt = 0;

  constructor(saved?: SavedTotals) {
    this.served = { ...zeroServed(), ...(saved?.v === 1 ? saved.served : {}) };
    this.origin = { ...zeroOrigin(), ...(saved?.v === 1 ? saved.origin : {}) };
    this.protection = { ...zeroProtection(), ...(saved?.v === 1 ? saved.protection : {}) };
  }

  /** Adds what is new in `report`; a report of another format is refused with an error naming it. */
  add(report: IsolateReport): void {
    if (report?.v !== 1)
      throw new Error(`stats report format ${String(report?.v)} is not 1: isolates of another herdless version`);
    const known = this.isolates.get(report.isolate);
    // What the object already counted: its own record, else what the isolate says was acknowledged.
    const counted = known ?? report.acknowledged;
    for (const kind of SERVE_KINDS) {
      const delta =
        finite(report.served[kind]) - Math.max(finite(counted.served[kind]), finite(report.acknowledged.served[kind]));
      if (delta > 0) this.served[kind] += delta;
    }
    for (const kind of ORIGIN_KINDS) {
      const delta =
        finite(report.origin[kind]) - Math.max(finite(counted.origin[kind]), finite(report.acknowledged.origin[kind]));
      if (delta > 0) this.origin[kind] += delta;
    }
    const protection = { ...zeroProtection(), ...report.protection };
    for (const kind of PROTECTION_KINDS) {
      const delta =
        finite(protection[kind]) -
        Math.max(finite(counted.protection?.[kind]), finite(report.acknowledged.protection?.[kind]));
      if (delta > 0) this.protection[kind] += delta;
    }
    const fresh = !known || report.seq > known.seq;
    if (fresh) for (const second of report.series) this.addSecond(second);
    this.isolates.set(report.isolate, {
      startedAt: report.startedAt,
      reportedAt: Math.max(known?.reportedAt ?? 0, report.at),
      reports: (known?.reports ?? 0) + 1,
      served: maxOf(known?.served, report.served),
      origin: maxOf(known?.origin, report.origin),
      protection: maxOf(known?.protection, protection),
      seq: Math.max(known?.seq ?? 0, report.seq),
      topKeys: report.topKeys.slice(0, TOP_KEYS),
    });
    this.newestAt = Math.max(this.newestAt, report.at);
    this.forget();
  }

  view(): DeploymentView {
    const reporters = [...this.isolates].sort((a, b) => b[1].reportedAt - a[1].reportedAt);
    const keys = new Map<string, number>();
    for (const [, known] of reporters)
      for (const { key, requests } of known.topKeys) keys.set(key, (keys.get(key) ?? 0) + requests);
    return {
      served: { ...this.served },
      origin: { ...this.origin },
      protection: { ...this.protection },
      series: [...this.seconds.values()].sort((a, b) => a.at - b.at),
      topKeys: [...keys]
        .sort((a, b) => b[1] - a[1])
        .slice(0, TOP_KEYS)
        .map(([key, requests]) => ({ key, requests })),
      isolates: reporters.length,
      newestReportAt: reporters[0]?.[1].reportedAt ?? 0,
      oldestReportAt: reporters.at(-1)?.[1].reportedAt ?? 0,
      reporters: reporters.slice(0, MAX_REPORTERS_SHOWN).map(([isolate, known]) => ({
        isolate,
        startedAt: known.startedAt,
        reportedAt: known.reportedAt,
        reports: known.reports,
        requests: SERVE_KINDS.reduce((sum, kind) => sum + known.served[kind], 0),
      })),
    };
  }

  saved(): SavedTotals {
    return { v: 1, served: { ...this.served }, origin: { ...this.origin }, protection: { ...this.protection } };
  }

  private addSecond(second: SecondCounts): void {
    let into = this.seconds.get(second.at);
    if (!into) this.seconds.set(second.at, (into = { at: second.at, served: {}, origin: 0 }));
    for (const kind of SERVE_KINDS) {
      const n = finite(second.served[kind]);
      if (n > 0) into.served[kind] = (into.served[kind] ?? 0) + n;
    }
    into.origin += finite(second.origin);
  }

  private forget(): void {
    for (const [id, known] of this.isolates)
      if (known.reportedAt < this.newestAt - FORGET_ISOLATE_MS) this.isolates.delete(id);
    for (const at of this.seconds.keys()) if (at <= this.newestAt - WINDOW_MS) this.seconds.delete(at);
  }
}

/** A count from a report: anything but a finite non-negative number counts as 0. */
function finite(n: number | undefined): number {
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? n : 0;
}

function maxOf<K extends string>(a: Record<K, number> | undefined, b: Record<K, number>): Record<K, number> {
  const out = { ...b };
  if (a) for (const kind of Object.keys(a) as K[]) out[kind] = Math.max(finite(a[kind]), finite(b[kind]));
  return out;
}
