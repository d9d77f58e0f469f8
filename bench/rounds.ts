/**
 * A scenario's alternated rounds (scenario.repeats) read against a baseline's rounds of the
 * same run: the Worker's spike tail against the bare Worker (worker-report.ts) and the fleet's
 * and one process's tails against their bare servers (fleet-tail.ts). A target on a ratio
 * judges the median of the rounds' ratios and lists each round.
 */
import { fmt } from "./format.ts";
import { median } from "./miss-trace.ts";
import type { BenchRun, CellResult, LoadResult, ScenarioName } from "./types.ts";

export type Latency = LoadResult["latency"];

/** The loads of a runtime's rounds of a scenario, in the order run. */
export function roundsOf(run: BenchRun, scenario: ScenarioName, runtime: string): NonNullable<CellResult["load"]>[] {
  return run.cells
    .filter((c) => c.scenario === scenario && c.runtime === runtime && c.skipped === undefined && c.load)
    .map((c) => c.load!);
}

/** A runtime's rounds paired with its baseline's, in the order run, and the median of each tail ratio. */
export function againstBase(cells: Latency[], bases: Latency[]) {
  const pairs = cells.slice(0, bases.length).map((cell, i) => ({ cell, base: bases[i]! }));
  return {
    pairs,
    r99: median(pairs.map(({ cell, base }) => cell.p99Ms / base.p99Ms)),
    r999: median(pairs.map(({ cell, base }) => cell.p999Ms / base.p999Ms)),
  };
}

/** One round's tails against its baseline's: `p99 a ÷ b ms = r×, p99.9 a ÷ b ms = r×`. */
export function pairText({ cell, base }: { cell: Latency; base: Latency }): string {
  return `p99 ${cell.p99Ms} ÷ ${base.p99Ms} ms = ${fmt(cell.p99Ms / base.p99Ms, 2)}×, p99.9 ${cell.p999Ms} ÷ ${base.p999Ms} ms = ${fmt(cell.p999Ms / base.p999Ms, 2)}×`;
}
