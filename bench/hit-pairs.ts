/**
 * The hit path against a bare server, in alternated pairs: herdless and its bare baseline
 * run side by side against one origin, and the load alternates between them (herdless then
 * bare, bare then herdless, …), so both see the same moments of a noisy machine. The bare
 * Node server is its own process; the bare Worker is in the same workerd as herdless's data
 * centers, on its own socket. The load is wrk-like (raw sockets, raw-load.ts).
 *
 * For the Node server, a CPU profile of one more herdless process under the same load is
 * summarized (cpu-profile.ts): where a hit's CPU goes.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { captureSample } from "./bare-node.ts";
import { meterReading, runLoad, warm } from "./cell.ts";
import { readProfile, type ProfileSummary } from "./cpu-profile.ts";
import { NODE_DIST } from "./node-build.ts";
import { startOrigin, summarizeOrigin } from "./origin.ts";
import { TMP_DIR } from "./processes.ts";
import { startHerdless, startRuntime, writeConfig, type Runtime } from "./runtimes.ts";
import { configFor, HOST, type Scenario } from "./scenarios.ts";
import type { CellResult, HitPair, LoadResult, LoadSpec, RuntimeName } from "./types.ts";

/** The unmeasured load before the measured rounds and before the profile's window. */
const WARM_UP_MS = 2000;

type Measured = { load: LoadResult; serverCpuMs: number };

async function measure(runtime: Runtime, targets: string[], load: Omit<LoadSpec, "targets" | "host">) {
  const cpu0 = runtime.servers.reduce((sum, s) => sum + s.cpuMs(), 0);
  const result = await runLoad({ ...load, targets, host: HOST, raw: true });
  const cpu = runtime.servers.reduce((sum, s) => sum + s.cpuMs(), 0) - cpu0;
  return { load: result, serverCpuMs: cpu };
}

const usPerRequest = (m: Measured) => (m.load.requests === 0 ? 0 : (m.serverCpuMs * 1000) / m.load.requests);

/** The round with the median throughput: the one each cell's table row shows. */
function median(rounds: Measured[]): Measured {
  const sorted = [...rounds].sort((a, b) => a.load.throughputRps - b.load.throughputRps);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Runs `pairs` alternated rounds of `herdless` (node or worker) and its bare baseline; returns both cells. */
export async function runHitPairs(
  scenario: Scenario,
  herdless: "node" | "worker",
  quick: boolean,
  pairs: number,
  log: (line: string) => void,
): Promise<CellResult[]> {
  const bareName: RuntimeName = herdless === "node" ? "bare-node" : "bare-worker";
  const cell: CellResult = { scenario: scenario.name, runtime: herdless, notes: [] };
  const bareCell: CellResult = { scenario: scenario.name, runtime: bareName, notes: [] };
  const load = scenario.load(quick);
  const path = scenario.warmPaths?.[0] ?? load.paths[0] ?? "/";
  const origin = await startOrigin(scenario.cacheControl, scenario.originLatencyMs);
  const context = { origin, config: configFor(scenario), label: `${scenario.name}-${herdless}` };
  const stops: Array<() => Promise<void>> = [];
  try {
    const runtime = await startRuntime(herdless, context);
    stops.push(() => runtime.stop());
    cell.notes.push(...runtime.notes);
    await warm(runtime, [path]);
    const sample = await captureSample(`${runtime.targets[0]}${path}`, HOST);
    let bare: Runtime;
    let bareTargets: string[];
    if (herdless === "node") {
      bare = await startRuntime("bare-node", { ...context, sample });
      stops.push(() => bare.stop());
      bareTargets = bare.targets;
    } else {
      if (runtime.bare === undefined) throw new Error("the worker runtime has no bare Worker");
      const res = await fetch(`${runtime.bare}/__bench/sample`, { method: "PUT", body: JSON.stringify(sample) });
      if (res.status !== 204) throw new Error(`the bare Worker did not take the sample: ${res.status}`);
      // The same workerd: its CPU is read for the whole process group, with one side loaded at a time.
      bare = runtime;
      bareTargets = [runtime.bare];
      bareCell.notes.push("in the same workerd as herdless's data centers, on its own socket");
    }
    bareCell.notes.push(`replays herdless's answer: ${Buffer.from(sample.bodyBase64, "base64").length} B body`);
    // One isolate against one: the Worker's load goes to one data center, as the bare Worker's
    // goes to its one socket. Spread over the 4 data centers, workerd switches isolates between
    // requests, which cost ~25 % more CPU per request here (herdless's hit measured both
    // ways), a cost of the topology that the bare side would not pay.
    const ourTargets = herdless === "worker" ? runtime.targets.slice(0, 1) : runtime.targets;
    if (herdless === "worker")
      cell.notes.push("the load goes to data center 0 only: one isolate, as the bare Worker's");
    // Unmeasured first rounds: both servers' code compiled by the JIT before anything counts.
    const warmUp = { ...load, durationMs: WARM_UP_MS };
    await measure(runtime, ourTargets, warmUp);
    await measure(bare, bareTargets, warmUp);
    await origin.reset();
    if (herdless === "worker") await meterReading(runtime.targets, "POST");
    const ours: Measured[] = [];
    const theirs: Measured[] = [];
    for (let i = 0; i < pairs; i++) {
      // Alternate which goes first, so neither always follows the other's leftovers.
      const first = i % 2 === 0;
      if (first) ours.push(await measure(runtime, ourTargets, load));
      theirs.push(await measure(bare, bareTargets, load));
      if (!first) ours.push(await measure(runtime, ourTargets, load));
      log(
        `  ${scenario.name} pair ${i + 1}: ${herdless} ${ours[i]!.load.throughputRps} req/s, ${bareName} ${theirs[i]!.load.throughputRps} req/s`,
      );
    }
    if (herdless === "worker") cell.meter = await meterReading(runtime.targets, "GET");
    cell.pairs = ours.map((m, i): HitPair => ({
      rps: m.load.throughputRps,
      bareRps: theirs[i]!.load.throughputRps,
      cpuUsPerRequest: usPerRequest(m),
      bareCpuUsPerRequest: usPerRequest(theirs[i]!),
      p99Ms: m.load.latency.p99Ms,
      bareP99Ms: theirs[i]!.load.latency.p99Ms,
    }));
    const stats = summarizeOrigin(await origin.stats());
    for (const [c, rounds] of [
      [cell, ours],
      [bareCell, theirs],
    ] as const) {
      const m = median(rounds);
      c.load = m.load;
      c.serverCpuMs = m.serverCpuMs;
      c.origin = stats;
      c.notes.push(
        `median of ${rounds.length} alternated rounds (${rounds.map((r) => r.load.throughputRps).join(", ")} req/s)`,
      );
    }
    if (herdless === "node") {
      const profile = await profileNodeHits(context, path, {
        ...load,
        durationMs: Math.min(load.durationMs ?? 5000, 5000),
      });
      if (profile) cell.profile = profile;
    }
    return [cell, bareCell];
  } finally {
    for (const stop of stops.reverse()) await stop();
    await origin.server.stop();
  }
}

/**
 * One more herdless process under `node --cpu-prof`, warmed and loaded like the pairs; the
 * profile of its serving thread (the bounded-heap worker: the thread with the most busy
 * samples) is summarized over the load's window only, so start-up does not count.
 */
async function profileNodeHits(
  context: Parameters<typeof writeConfig>[0],
  path: string,
  load: Omit<LoadSpec, "targets" | "host">,
): Promise<ProfileSummary | undefined> {
  const dir = join(TMP_DIR, "hit-profile");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = writeConfig(
    { ...context, label: `${context.label}-profiled` },
    {
      ...context.config,
      origin: { ...(context.config.origin as object), url: context.origin.url },
    },
  );
  const server = await startHerdless("herdless (profiled)", config, undefined, ["--cpu-prof", "--cpu-prof-dir", dir]);
  let window: { fromUs: number; toUs: number };
  try {
    const runtime: Runtime = {
      name: "node",
      targets: [server.ready],
      servers: [server],
      breakers: 1,
      notes: [],
      stop: () => server.stop(),
    };
    await warm(runtime, [path]);
    await runLoad({ ...load, durationMs: WARM_UP_MS, targets: runtime.targets, host: HOST, raw: true });
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    await runLoad({ ...load, targets: runtime.targets, host: HOST, raw: true });
    window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
  } finally {
    // SIGTERM: the CLI drains and exits, and Node writes each thread's profile on its way out.
    await server.stop();
  }
  const summaries = readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => readProfile(join(dir, f), window, NODE_DIST));
  return summaries.sort((a, b) => b.busyMs - a.busyMs)[0];
}
