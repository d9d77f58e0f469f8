/** One (scenario × runtime) measurement: fresh origin, fresh runtime, load, counters, teardown. */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { captureSample, type Sample } from "./bare-node.ts";
import { loopSummary, redisLosses } from "./fleet-tail.ts";
import { missTrace, type MissTrace, type TraceEvent } from "./miss-trace.ts";
import { startOrigin, summarizeOrigin, type BenchOrigin } from "./origin.ts";
import { ROOT, runTsScript, threadCpuMs } from "./processes.ts";
import { startRuntime, type Runtime } from "./runtimes.ts";
import { configFor, HERDLESS_CONFIG, HOST, type Scenario } from "./scenarios.ts";
import { parseConfig } from "../src/core/config.ts";
import type { CellResult, LoadResult, LoadSpec, MeterReading, RuntimeName } from "./types.ts";

/** Responses captured from herdless, by scenario and runtime (`tail-hits worker`), replayed by the bare servers. */
export type Samples = Map<string, Sample>;

const BARE_OF: Partial<Record<RuntimeName, RuntimeName>> = {
  "bare-node": "node",
  "bare-fleet": "fleet",
  "bare-worker": "worker",
};

/** CPU of every server process of `runtime` so far (ms). */
const serverCpuMs = (runtime: Runtime): number => runtime.servers.reduce((sum, s) => sum + s.cpuMs(), 0);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function warm(runtime: Runtime, paths: string[]): Promise<void> {
  for (const target of runtime.targets) {
    for (const path of paths) {
      const res = await captureSample(`${target}${path}`, HOST);
      if (res.status >= 400) throw new Error(`warming ${path} through ${target} answered ${res.status}`);
    }
  }
}

export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const budgetMs = (spec.durationMs ?? 0) + spec.timeoutMs + 60_000;
  return runTsScript("bench/load-generator.ts", [JSON.stringify(spec)], budgetMs).then(
    (out) => JSON.parse(out.trim().split("\n").pop() ?? "{}") as LoadResult,
  );
}

/** Runs the origin down for `downMs` in the middle of a `durationMs` run; returns what reached it meanwhile. */
async function driveOutage(
  origin: BenchOrigin,
  durationMs: number,
  downMs: number,
): Promise<{ startMs: number; requests: number }> {
  const startMs = Math.round((durationMs - downMs) / 2);
  await sleep(startMs);
  const before = (await origin.stats()).requests;
  await origin.set({ down: true });
  await sleep(downMs);
  await origin.set({ down: false });
  const after = (await origin.stats()).requests;
  // Control calls are not origin requests; the two snapshots bracket exactly the down window.
  return { startMs, requests: after - before };
}

/** Kills Redis (and starts it again, empty) or one fleet process while the load runs. */
async function driveFault(runtime: Runtime, fault: NonNullable<ReturnType<NonNullable<Scenario["fault"]>>>) {
  const faults = runtime.faults!;
  await sleep(fault.atMs);
  if (fault.kind === "member-killed") return faults.killMember(0);
  await faults.killRedis();
  await sleep(fault.downMs ?? 0);
  await faults.restartRedis();
}

const TMP = join(ROOT, "bench/results/tmp");

/**
 * The Worker meter of every data center (bench/worker-meter.js), summed; POST also resets it.
 * With `trace`, POST starts a timeline and GET collects every isolate's into `events`.
 */
export async function meterReading(
  targets: string[],
  method: "GET" | "POST",
  trace = false,
): Promise<MeterReading & { events?: TraceEvent[] }> {
  const total: MeterReading & { events?: TraceEvent[] } = {
    clientRequests: 0,
    handlerMs: 0,
    counts: {},
    activeMs: {},
    rowsBySql: {},
    ...(trace ? { events: [] } : {}),
  };
  for (const target of targets) {
    const res = await fetch(`${target}/__bench/meter${trace ? "?trace=1" : ""}`, { method });
    if (!res.ok) throw new Error(`the Worker meter at ${target} answered ${res.status}`);
    const one = (await res.json()) as MeterReading & { trace?: TraceEvent[] };
    if (one.trace) total.events?.push(...one.trace);
    for (const [sql, n] of Object.entries(one.rowsBySql ?? {})) {
      const slot = ((total.rowsBySql ??= {})[sql] ??= { calls: 0, read: 0, written: 0 });
      slot.calls += n.calls;
      slot.read += n.read;
      slot.written += n.written;
    }
    total.clientRequests += one.clientRequests;
    total.handlerMs = Math.round(total.handlerMs + one.handlerMs);
    for (const [op, n] of Object.entries(one.counts)) {
      const slot = (total.counts[op] ??= { fg: 0, bg: 0, ms: 0 });
      slot.fg += n.fg;
      slot.bg += n.bg;
      slot.ms = Math.round(slot.ms + (n.ms ?? 0));
    }
    for (const [cls, ms] of Object.entries(one.activeMs))
      total.activeMs[cls] = Math.round((total.activeMs[cls] ?? 0) + ms);
  }
  return total;
}

export async function runCell(
  scenario: Scenario,
  name: RuntimeName,
  quick: boolean,
  samples: Samples,
): Promise<CellResult> {
  const cell: CellResult = { scenario: scenario.name, runtime: name, notes: [] };
  const load = scenario.load(quick);
  const origin = await startOrigin(scenario.cacheControl, scenario.originLatencyMs);
  let runtime: Runtime | undefined;
  try {
    const bareOf = BARE_OF[name];
    let sample = bareOf === undefined ? undefined : samples.get(`${scenario.name} ${bareOf}`);
    if (bareOf !== undefined && sample === undefined) {
      sample = await captureSample(`${origin.url}${scenario.warmPaths?.[0] ?? "/"}`, HOST);
      cell.notes.push(`no ${bareOf} sample in this run: replays the origin's response instead`);
    }
    runtime = await startRuntime(name, {
      origin,
      config: configFor(scenario),
      label: `${scenario.name}-${name}`,
      ...(sample ? { sample } : {}),
    });
    cell.notes.push(...runtime.notes);
    if (scenario.config && name !== "direct")
      cell.notes.push(`config on top of the bench's: \`${JSON.stringify(scenario.config)}\``);
    if (scenario.name === "hit-path" && name === "worker") {
      cell.notes.push(
        "a warm hit is served from the isolate's memory tier (src/core/tiered-store.ts) without cache.match; Miniflare's Cache API (a Durable Object behind a loopback service) is only read on a memory miss",
      );
    }
    if (scenario.warmPaths && bareOf === undefined && name !== "direct") await warm(runtime, scenario.warmPaths);
    const baseline = Object.entries(BARE_OF).find(([, of]) => of === name)?.[0] as RuntimeName | undefined;
    const samplePath = scenario.warmPaths?.[0] ?? load.paths[0];
    if (baseline && scenario.runtimes.includes(baseline) && scenario.warmPaths && runtime.targets[0])
      samples.set(`${scenario.name} ${name}`, await captureSample(`${runtime.targets[0]}${samplePath}`, HOST));

    if (scenario.coldProcessRun && name !== "direct") {
      const cpu0 = serverCpuMs(runtime);
      const first = await runLoad({ ...ownKeys(load, "/cold-process"), targets: runtime.targets, host: HOST });
      const cpuMs = serverCpuMs(runtime) - cpu0;
      cell.coldProcess = { latency: first.latency, serverCpuMs: cpuMs, errors: first.errors };
      cell.notes.push(
        `the same load on another key first, on the freshly started servers (not in the table or the targets): p50 ${first.latency.p50Ms} / p99 ${first.latency.p99Ms} / max ${first.latency.maxMs} ms, server CPU ${cpuMs} ms, ${first.errors} errors`,
      );
    }
    await warmUp(scenario, load, runtime, cell, quick);
    await origin.reset();
    // The timeline's async context costs every call it wraps: the measured run goes untraced,
    // and a second run of the same load on other keys is traced for its hops (tracedHops below).
    const trace = name === "worker" && scenario.traceRequests === true;
    if (name === "worker") await meterReading(runtime.targets, "POST");
    await runtime.redisCommands?.reset();
    const runStartedAt = Date.now();
    const serverCpu0 = serverCpuMs(runtime);
    // One Node process: its serving thread apart from V8's helper threads (GC, compiling).
    const threadsOf =
      scenario.coldProcessRun && (name === "node" || name === "bare-node") ? runtime.servers[0] : undefined;
    const threads0 = threadsOf && threadCpuMs(threadsOf.pgid);
    const originCpu0 = origin.server.cpuMs();
    const loadBefore = loadavg()[0] ?? 0;
    const loadPromise = runLoad({ ...load, targets: runtime.targets, host: HOST });
    const fault = scenario.fault?.(quick);
    const faultDone = fault === undefined || runtime.faults === undefined ? undefined : driveFault(runtime, fault);
    if (fault) cell.fault = fault;
    const downMs = scenario.outageMs?.(quick);
    const outage = downMs === undefined ? undefined : await driveOutage(origin, load.durationMs ?? 0, downMs);
    let result = await loadPromise;
    await faultDone;
    let serverCpu = serverCpuMs(runtime) - serverCpu0;
    if (threadsOf && threads0)
      cell.threadCpuMs = [...threadCpuMs(threadsOf.pgid)]
        .map(([tid, ms]) => ms - (threads0.get(tid) ?? 0))
        .filter((ms) => ms > 0)
        .sort((a, b) => b - a);
    if ((scenario.rounds ?? 1) > 1) {
      const rounds = [result.throughputRps];
      for (let i = 1; i < (scenario.rounds ?? 1); i++) {
        const cpu0 = serverCpuMs(runtime);
        const again = await runLoad({ ...load, targets: runtime.targets, host: HOST });
        rounds.push(again.throughputRps);
        if (again.throughputRps > result.throughputRps) {
          result = again;
          serverCpu = serverCpuMs(runtime) - cpu0;
        }
      }
      cell.notes.push(`best of ${rounds.length} rounds (${rounds.join(", ")} req/s)`);
    }
    cell.loadAverage = [loadBefore, loadavg()[0] ?? 0];
    const redisCommands = await runtime.redisCommands?.read();
    if (redisCommands) {
      cell.redisCommands = redisCommands;
      cell.redisLost = redisLosses(runtime.servers, runStartedAt, Date.now());
    }
    const loop = loopSummary(runtime.servers, runStartedAt, Date.now());
    if (loop) cell.loop = loop;
    if (name === "worker") {
      cell.meter = await meterReading(runtime.targets, "GET");
    }
    // A cold scenario's sample, once herdless has served the key (the bare Worker replays it).
    if (baseline && scenario.runtimes.includes(baseline) && !scenario.warmPaths && samplePath && runtime.targets[0])
      samples.set(`${scenario.name} ${name}`, await captureSample(`${runtime.targets[0]}${samplePath}`, HOST));
    // With a warm-up in the load (settleMs): also the origin requests from its end to the load's.
    const settled =
      load.settleMs !== undefined && load.durationMs !== undefined && result.startedAt !== undefined
        ? { fromMs: result.startedAt + load.settleMs, toMs: result.startedAt + load.durationMs }
        : undefined;
    const stats = await origin.stats(settled);
    const originCpuMs = origin.server.cpuMs() - originCpu0;
    cell.load = result;
    cell.origin = summarizeOrigin(stats, load.settleMs);
    cell.originCpuMs = originCpuMs;
    cell.serverCpuMs = name === "direct" ? originCpuMs : serverCpu;
    if (scenario.ideal) cell.ideal = scenario.ideal(load);
    if (trace) {
      const traced = await tracedRun(scenario.name, load, runtime.targets);
      if (traced) {
        cell.trace = traced;
        cell.notes.push(
          `hops traced in a second run of ${traced.requests} requests on other keys (${Math.round(traced.clientP50Ms * 10) / 10} ms p50 there, against ${Math.round(result.latency.p50Ms * 10) / 10} ms untraced): the timeline's async context is not charged to the measured run`,
        );
      }
    }
    if (outage !== undefined && downMs !== undefined) {
      // The breaker opens on a run of failureThreshold sick calls from minFailingKeys keys that has
      // lasted probeIntervalMs (breaker.ts): in that span every key may be asked once (a key that
      // has not failed is not held while the breaker is closed), then one call finds the run lasted
      // and opens it; one probe per interval for the rest of the outage.
      const { failureThreshold, minFailingKeys, probeIntervalMs } = parseConfig({
        ...HERDLESS_CONFIG,
        origin: { ...HERDLESS_CONFIG.origin, url: "http://127.0.0.1/" },
      }).breaker;
      const keys = new Set(load.paths).size;
      const opening = Math.max(failureThreshold, minFailingKeys, keys + 1);
      const probes = Math.ceil(Math.max(0, downMs - probeIntervalMs) / probeIntervalMs);
      const perBreaker = opening + probes;
      const allowed = runtime.breakers * perBreaker;
      cell.outage = {
        downMs,
        startMs: outage.startMs,
        originRequestsWhileDown: outage.requests,
        breakers: runtime.breakers,
        allowed,
        formula: `${runtime.breakers} breaker${runtime.breakers === 1 ? "" : "s"} × (max(failureThreshold ${failureThreshold}, minFailingKeys ${minFailingKeys}, ${keys} keys + 1) = ${opening} sick calls before it opens + ⌈(${downMs} ms − probeIntervalMs ${probeIntervalMs}) ÷ ${probeIntervalMs}⌉ = ${probes} probes)`,
        clientErrors: result.errors + result.shed,
      };
    }
    return cell;
  } finally {
    await runtime?.stop();
    await origin.server.stop();
  }
}

/** The same load on keys of its own: every path, and the prefix of unique ones, under `tag`. */
function ownKeys(load: Omit<LoadSpec, "targets" | "host">, tag: string): Omit<LoadSpec, "targets" | "host"> {
  const paths = load.paths.map((path) => `${tag}${path}`);
  return load.uniquePrefix === undefined
    ? { ...load, paths }
    : { ...load, paths, uniquePrefix: `${tag}${load.uniquePrefix}` };
}

/**
 * What a scenario runs on other keys before its measured run (not counted): `warmUpMs` of its
 * load through herdless and the bare servers, or `warmUpRequests` of it through every runtime,
 * the origin asked directly too (a sequential load, which no origin falls over from).
 */
async function warmUp(
  scenario: Scenario,
  load: Omit<LoadSpec, "targets" | "host">,
  runtime: Runtime,
  cell: CellResult,
  quick: boolean,
): Promise<void> {
  const other = ownKeys(load, "/warm-up");
  const warmUpMs = scenario.warmUpMs?.(quick);
  if (warmUpMs !== undefined && cell.runtime !== "direct") {
    // Other keys, so the measured run starts as the scenario says (cold or warmed), on compiled code.
    await runLoad({ ...other, durationMs: warmUpMs, targets: runtime.targets, host: HOST });
    cell.notes.push(`${warmUpMs / 1000} s of the same load on other keys before the measured run (not counted)`);
  }
  if (scenario.warmUpRequests === undefined) return;
  const requestsPerConnection = Math.ceil(scenario.warmUpRequests / load.connections);
  await runLoad({ ...other, requestsPerConnection, targets: runtime.targets, host: HOST });
  cell.notes.push(
    `${requestsPerConnection * load.connections} requests of the same load on keys of their own before the measured run (not counted)`,
  );
}

/**
 * The same load again on keys of its own, with the meter's timeline on: where each request's
 * time goes (bench/miss-trace.ts). Run after the measured run, whose latency it would inflate.
 */
async function tracedRun(
  scenario: string,
  load: Omit<LoadSpec, "targets" | "host">,
  targets: string[],
): Promise<(MissTrace & { clientP50Ms: number }) | undefined> {
  await meterReading(targets, "POST", true);
  const result = await runLoad({ ...ownKeys(load, "/traced"), targets, host: HOST });
  const { events } = await meterReading(targets, "GET", true);
  const traced = events ? missTrace(events) : undefined;
  if (!traced || !events) return undefined;
  // The raw timeline, for a closer look than the report's medians.
  mkdirSync(TMP, { recursive: true });
  writeFileSync(join(TMP, `${scenario}-worker-trace.json`), JSON.stringify(events));
  return { ...traced, clientP50Ms: result.latency.p50Ms };
}
