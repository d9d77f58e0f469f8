import type { StatsScope } from "../core/admin/admin.ts";
import type { CounterView } from "../core/admin/metrics.ts";
import type { ReadyIsolate } from "./isolate.ts";

/** Why a Worker without the STATS binding shows one isolate's counters. */
const NO_BINDING =
  "no STATS binding: bind the StatsObject class as STATS (docs/cloudflare.md) for the deployment's totals";

/**
 * The counters a Worker's stats and metrics show: the deployment's, read back from the stats
 * object with a report of this isolate's (so its own are current); else this isolate's
 * own, with the reason.
 */
export async function workerCounters(
  isolate: ReadyIsolate,
): Promise<{ counters: CounterView; scope: StatsScope; isolates?: number }> {
  if (!isolate.reporter) return { counters: isolate.metrics.view(), scope: { of: "isolate", reason: NO_BINDING } };
  try {
    const { isolates, newestReportAt, oldestReportAt, reporters, ...counters } = await isolate.reporter.report();
    return {
      counters,
      isolates,
      scope: {
        of: "deployment",
        reportIntervalMs: isolate.config.admin.statsReportIntervalMs,
        isolates,
        newestReportAt,
        oldestReportAt,
        reporters,
      },
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return {
      counters: isolate.metrics.view(),
      scope: { of: "isolate", reason: `the deployment's stats object could not be reached: ${message}` },
    };
  }
}
