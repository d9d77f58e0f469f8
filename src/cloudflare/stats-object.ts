import { DurableObject } from "cloudflare:workers";
import {
  DeploymentTotals,
  type DeploymentView,
  type IsolateReport,
  type SavedTotals,
} from "../core/admin/deployment-stats.ts";
import type { ConfigEnv } from "./config-env.ts";

const STORAGE_KEY = "totals";

/** The name of the deployment's one stats object. */
export const STATS_OBJECT = "global";

/**
 * The deployment's counters on Workers: every isolate reports its own to this one object
 * (`idFromName("global")`) at most once per `admin.statsReportIntervalMs`, under
 * `ctx.waitUntil`, never on a request's way. Its load is isolates ÷ interval (docs/scale.md).
 * The totals are kept in storage, so the deployment's counters never go back; which
 * isolates reported and when is kept in memory (ten minutes' worth).
 */
export class StatsObject extends DurableObject<ConfigEnv> {
  private totals: DeploymentTotals | undefined;

  /** Adds an isolate's report and answers the deployment's totals. */
  async report(report: IsolateReport): Promise<DeploymentView> {
    const totals = await this.load();
    totals.add(report);
    await this.ctx.storage.put(STORAGE_KEY, totals.saved());
    return totals.view();
  }

  /** The deployment's totals, as the isolates last reported them. */
  async view(): Promise<DeploymentView> {
    return (await this.load()).view();
  }

  private async load(): Promise<DeploymentTotals> {
    return (this.totals ??= new DeploymentTotals(await this.ctx.storage.get<SavedTotals>(STORAGE_KEY)));
  }
}
