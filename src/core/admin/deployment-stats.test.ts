import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { DeploymentTotals, type DeploymentView, type IsolateReport } from "./deployment-stats.ts";
import { Metrics } from "./metrics.ts";
import { StatsReporter } from "./stats-reporter.ts";

/** An isolate: its counters, and a reporter whose reports land in `totals` (or are lost, or their answers lost). */
function isolate(totals: DeploymentTotals, clock: ManualClock) {
  const metrics = new Metrics(clock);
  const sent: IsolateReport[] = [];
  let fate: "delivered" | "lost" | "answer-lost" = "delivered";
  const reporter = new StatsReporter({
    metrics,
    clock,
    intervalMs: 10_000,
    send: async (report): Promise<DeploymentView> => {
      sent.push(structuredClone(report));
      if (fate === "lost") throw new Error("network");
      totals.add(structuredClone(report));
      if (fate === "answer-lost") throw new Error("answer lost");
      return totals.view();
    },
    onError: () => undefined,
  });
  return { metrics, reporter, sent, setFate: (f: typeof fate) => (fate = f) };
}

describe("deployment totals from isolate reports", () => {
  it("count every request exactly once through lost reports, lost answers and a stats object that forgot the isolate", async () => {
    const clock = new ManualClock(1_000_000);
    let totals = new DeploymentTotals();
    const a = isolate(totals, clock);
    a.metrics.count("miss", "k");
    await a.reporter.afterRequest();
    expect(totals.view().served.miss).toBe(1);

    // A report lost on the way: its counts go with the next one.
    a.setFate("lost");
    a.metrics.count("hit", "k");
    clock.advance(10_000);
    await a.reporter.afterRequest();
    expect(totals.view().served.hit).toBe(0);
    // A report that arrived but whose answer was lost: the next one repeats it, counted once.
    a.setFate("answer-lost");
    a.metrics.count("hit", "k");
    clock.advance(10_000);
    await a.reporter.afterRequest();
    a.setFate("delivered");
    a.metrics.count("hit", "k");
    clock.advance(10_000);
    await a.reporter.afterRequest();
    expect(totals.view().served).toMatchObject({ miss: 1, hit: 3 });

    // The object restarts from storage and no longer knows the isolate: the acknowledged baseline keeps it exact.
    totals = new DeploymentTotals(totals.saved());
    const b = isolate(totals, clock);
    b.metrics.count("stale");
    await b.reporter.afterRequest();
    a.metrics.count("hit", "k");
    clock.advance(10_000);
    // (a's reporter sends to the object it was built with; hand its report to the restarted one)
    await a.reporter.afterRequest();
    totals.add(a.sent.at(-1)!);
    expect(totals.view().served).toMatchObject({ miss: 1, hit: 4, stale: 1 });
    expect(totals.view().isolates).toBe(2);
  });

  it("sends at most one report per interval from traffic", async () => {
    const clock = new ManualClock(0);
    const a = isolate(new DeploymentTotals(), clock);
    for (let t = 0; t < 30_000; t += 500) {
      a.metrics.count("hit");
      await a.reporter.afterRequest();
      clock.advance(500);
    }
    expect(a.sent.map((r) => r.at)).toEqual([0, 10_000, 20_000]);
  });

  it("refuses a report of another format, naming it", () => {
    const totals = new DeploymentTotals();
    expect(() => totals.add({ v: 2 } as unknown as IsolateReport)).toThrow(/stats report format 2 is not 1/);
  });
});
