/**
 * The fleet's tail against the machine's (issue 17, item 5): in `steady`, the fleet's p99
 * and p99.9 are read against `bare-fleet` (as many bare Node servers as the fleet has
 * members, the connections spread alike, in the same run), next to one process against one
 * bare server; with the event loops of the servers (bench/loop-delay.mjs) and the commands
 * Redis ran per 1,000 client requests, split into those the hits would cost and the rest.
 */
import type { Server } from "./processes.ts";
import { median } from "./miss-trace.ts";
import type { BenchRun, CellResult, LoopSummary, RuntimeName, Target } from "./types.ts";

/** The fleet's tail ratio may be at most this much above one process's, in the same run. */
const FLEET_TAIL_FACTOR = 1.5;

const LINE = /^bench-loop (\{.*\})$/gm;

interface LoopLine {
  at: number;
  thread: "main" | "worker";
  maxMs: number;
  p99Ms: number;
  gcMs: number;
  gcMaxMs: number;
}

/** The servers' loop lines stamped within [fromMs, toMs], summed up. */
export function loopSummary(servers: Server[], fromMs: number, toMs: number): LoopSummary | undefined {
  const timeline: number[] = [];
  const summary: LoopSummary = { maxMs: 0, p99Ms: 0, gcMs: 0, gcMaxMs: 0, secondsOver50Ms: 0, timeline };
  let seen = false;
  for (const server of servers) {
    const lines = [...server.output().matchAll(LINE)].map((match) => JSON.parse(match[1]!) as LoopLine);
    // The thread that serves: the herdless CLI's worker (bounded-heap.ts), else the main thread.
    const serving = lines.some((line) => line.thread === "worker") ? "worker" : "main";
    for (const line of lines) {
      if (line.thread !== serving) continue;
      // A line covers the second before its stamp.
      if (line.at - 1000 < fromMs || line.at > toMs + 1000) continue;
      seen = true;
      const second = Math.max(0, Math.floor((line.at - 1000 - fromMs) / 1000));
      timeline[second] = Math.max(timeline[second] ?? 0, line.maxMs);
      summary.maxMs = Math.max(summary.maxMs, line.maxMs);
      summary.p99Ms = Math.max(summary.p99Ms, line.p99Ms);
      summary.gcMs = Math.round(summary.gcMs + line.gcMs);
      summary.gcMaxMs = Math.max(summary.gcMaxMs, line.gcMaxMs);
      if (line.maxMs > 50) summary.secondsOver50Ms++;
    }
  }
  for (let i = 0; i < timeline.length; i++) timeline[i] ??= 0;
  return seen ? summary : undefined;
}

/** Times a fleet member logged that it lost Redis (a command timed out, the socket closed) within the window. */
export function redisLosses(servers: Server[], fromMs: number, toMs: number): number {
  let lost = 0;
  for (const server of servers)
    for (const match of server.output().matchAll(/^\{"time":"([^"]+)","level":"warn","msg":"redis unreachable/gm)) {
      const at = Date.parse(match[1]!);
      if (at >= fromMs && at <= toMs) lost++;
    }
  return lost;
}

const fmt = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : "–");
/** A runtime's steady rounds (scenario.repeats), in the order run. */
const roundsOf = (run: BenchRun, runtime: RuntimeName): CellResult[] =>
  run.cells.filter((c) => c.scenario === "steady" && c.runtime === runtime && c.skipped === undefined && c.load);

/** One round's tail ratios: a runtime's p99 and p99.9 over its baseline's in the same round. */
function tail(cell: CellResult, base: CellResult): { p99: number; p999: number; text: string } {
  const a = cell.load!.latency;
  const b = base.load!.latency;
  const p99 = a.p99Ms / b.p99Ms;
  const p999 = a.p999Ms / b.p999Ms;
  return {
    p99,
    p999,
    text: `p99 ${a.p99Ms} ÷ ${b.p99Ms} ms = ${fmt(p99)}×, p99.9 ${a.p999Ms} ÷ ${b.p999Ms} ms = ${fmt(p999)}×`,
  };
}

/**
 * fleet ÷ bare-fleet against node ÷ bare-node: the fleet adds no tail of its own beyond one
 * process's. Each round's four runs are alternated; the target is judged on the median of
 * the rounds' ratios, since one 20 s run's p99.9 (its slowest ~500 answers on this 2-core
 * machine) moves with whatever else ran in that window, the baselines' as much as herdless's.
 */
export function fleetTailTargets(run: BenchRun): Target[] {
  const fleets = roundsOf(run, "fleet");
  const bareFleets = roundsOf(run, "bare-fleet");
  const nodes = roundsOf(run, "node");
  const bareNodes = roundsOf(run, "bare-node");
  const rounds = Math.min(fleets.length, bareFleets.length, nodes.length, bareNodes.length);
  if (rounds === 0) return [];
  const each = Array.from({ length: rounds }, (_, i) => ({
    f: tail(fleets[i]!, bareFleets[i]!),
    n: tail(nodes[i]!, bareNodes[i]!),
  }));
  const mid = (pick: (round: (typeof each)[number]) => number): number => median(each.map(pick));
  const f99 = mid((r) => r.f.p99);
  const f999 = mid((r) => r.f.p999);
  const n99 = mid((r) => r.n.p99);
  const n999 = mid((r) => r.n.p999);
  const pass = f99 <= FLEET_TAIL_FACTOR * n99 && f999 <= FLEET_TAIL_FACTOR * n999;
  const errors = fleets.reduce((sum, c) => sum + c.load!.errors, 0);
  const detail =
    rounds === 1
      ? `fleet ${each[0]!.f.text}; node ${each[0]!.n.text}`
      : `median of ${rounds} rounds: fleet p99 ${fmt(f99)}×, p99.9 ${fmt(f999)}×; node p99 ${fmt(n99)}×, p99.9 ${fmt(n999)}× (${each
          .map((r, i) => `round ${i + 1}: fleet ${r.f.text}; node ${r.n.text}`)
          .join(" | ")})`;
  return [
    {
      name: `steady: fleet's tail ÷ bare-fleet's ≤ ${FLEET_TAIL_FACTOR} × node's ÷ bare-node's (p99 and p99.9)`,
      verdict: pass && errors === 0 ? "PASS" : "MISS",
      detail,
    },
  ];
}

/** Lines under the steady table: the event loops, and Redis's commands per 1,000 client requests. */
export function fleetTailNotes(cell: CellResult): string[] {
  const lines: string[] = [];
  const l = cell.load;
  const byClass = l?.latencyByCacheStatus;
  if (byClass)
    lines.push(
      `- ${cell.runtime} latency by Cache-Status (p99 / p99.9 / max ms): ${Object.entries(byClass)
        .map(([kind, s]) => `${kind} ${s.p99Ms} / ${s.p999Ms} / ${s.maxMs}`)
        .join(", ")}.`,
    );
  if (cell.loop)
    lines.push(
      `- ${cell.runtime} event loops (every server thread): longest delay ${cell.loop.maxMs} ms, worst per-second p99 ${cell.loop.p99Ms} ms, ${cell.loop.secondsOver50Ms} server-seconds over 50 ms; GC ${cell.loop.gcMs} ms in all, longest pause ${cell.loop.gcMaxMs} ms.`,
    );
  if (cell.redisLost !== undefined)
    lines.push(
      `- ${cell.runtime}: ${cell.redisLost} times a member lost Redis during the run (a command past its timeout drops the connection; the member serves on its own until it is back).`,
    );
  if (cell.redisCommands && l && l.requests > 0) {
    const entries = Object.entries(cell.redisCommands).sort((a, b) => b[1] - a[1]);
    const total = entries.reduce((sum, [, n]) => sum + n, 0);
    const hits = l.byCacheStatus.hit ?? 0;
    const others = l.requests - hits;
    const perK = (n: number) => fmt((n * 1000) / l.requests, 1);
    lines.push(
      `- ${cell.runtime} Redis commands: ${total} over ${l.requests} client requests (${hits} hits, ${others} others) = ${perK(total)} per 1,000 requests, ${fmt(others > 0 ? total / others : 0, 1)} per non-hit — ${entries.map(([name, n]) => `${name} ${n}`).join(", ")}.`,
    );
  }
  return lines;
}
