/**
 * The fleet's tail against the machine's (issue 17, item 5): in `steady`, the fleet's p99
 * and p99.9 are read against `bare-fleet` (as many bare Node servers as the fleet has
 * members, the connections spread alike, in the same run), next to one process against one
 * bare server; with the event loops of the servers (bench/loop-delay.mjs) and the commands
 * Redis ran per 1,000 client requests, split into those the hits would cost and the rest.
 */
import { fmt } from "./format.ts";
import type { Server } from "./processes.ts";
import { againstBase, pairText, roundsOf } from "./rounds.ts";
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

/**
 * fleet ÷ bare-fleet against node ÷ bare-node: the fleet adds no tail of its own beyond one
 * process's. Each round's four runs are alternated; the target is judged on the median of
 * the rounds' ratios, since one 20 s run's p99.9 (its slowest ~500 answers on this 2-core
 * machine) moves with whatever else ran in that window, the baselines' as much as herdless's.
 */
export function fleetTailTargets(run: BenchRun): Target[] {
  const latencies = (runtime: RuntimeName) => roundsOf(run, "steady", runtime).map((load) => load.latency);
  const fleetLoads = roundsOf(run, "steady", "fleet");
  const fleets = fleetLoads.map((load) => load.latency);
  const bareFleets = latencies("bare-fleet");
  const nodes = latencies("node");
  const bareNodes = latencies("bare-node");
  const rounds = Math.min(fleets.length, bareFleets.length, nodes.length, bareNodes.length);
  if (rounds === 0) return [];
  const fleet = againstBase(fleets.slice(0, rounds), bareFleets);
  const node = againstBase(nodes.slice(0, rounds), bareNodes);
  const pass = fleet.r99 <= FLEET_TAIL_FACTOR * node.r99 && fleet.r999 <= FLEET_TAIL_FACTOR * node.r999;
  const errors = fleetLoads.reduce((sum, load) => sum + load.errors, 0);
  const each = fleet.pairs.map((pair, i) => `fleet ${pairText(pair)}; node ${pairText(node.pairs[i]!)}`);
  const detail =
    rounds === 1
      ? each[0]!
      : `median of ${rounds} rounds: fleet p99 ${fmt(fleet.r99, 2)}×, p99.9 ${fmt(fleet.r999, 2)}×; node p99 ${fmt(node.r99, 2)}×, p99.9 ${fmt(node.r999, 2)}× (${each
          .map((text, i) => `round ${i + 1}: ${text}`)
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
