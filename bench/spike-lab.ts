/**
 * Where a spike's time goes on one runtime: the bench's spike (500 connections at once on 1
 * cold key, 3 requests each) `--runs` times, each on fresh processes, printing the latency by
 * Cache-Status class, the server's and the load generator's CPU, and the server's CPU by
 * thread (a Node server's serving thread apart from V8's GC and compiler helpers).
 *
 *   node --import tsx bench/spike-lab.ts node|bare-node|nginx [--runs 3] [--warm] [--prof] [--flag=--some-node-flag]
 *   node --import tsx bench/spike-lab.ts node --variant "" --variant "--single-threaded-gc"   # alternated, per run
 *
 * `--warm`: the same spike on another key first (unmeasured), as the bench's spike does;
 * without it the measured spike is the fresh process's first. `--prof` (node): herdless runs
 * under `--cpu-prof`, and each thread's profile is summarized over the measured spike (the
 * files stay in bench/results/tmp/spike-profile-N for Chrome DevTools). Hold the bench lock.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { captureSample, type Sample } from "./bare-node.ts";
import { runLoad } from "./cell.ts";
import { profileMarkdown, readProfile } from "./cpu-profile.ts";
import { NODE_DIST } from "./node-build.ts";
import { startOrigin } from "./origin.ts";
import { installReaper, threadCpuMs, TMP_DIR } from "./processes.ts";
import { startHerdless, startRuntime, writeConfig } from "./runtimes.ts";
import { configFor, HOST, SCENARIOS } from "./scenarios.ts";
import type { RuntimeName } from "./types.ts";

installReaper();
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: "string", default: "3" },
    prof: { type: "boolean", default: false },
    warm: { type: "boolean", default: false },
    flag: { type: "string", multiple: true, default: [] },
    variant: { type: "string", multiple: true, default: [] },
  },
});
const name = (positionals[0] ?? "node") as RuntimeName;
const scenario = SCENARIOS.find((s) => s.name === "spike");
if (!scenario) throw new Error("no spike scenario");
const load = scenario.load(false);
const path = load.paths[0] ?? "/";

// Node flags per run: each --variant in turn (alternated, so the machine's drift falls on all alike).
const variants = values.variant.length > 0 ? values.variant : [""];
for (let i = 0; i < Number(values.runs) * variants.length; i++) {
  const run = Math.floor(i / variants.length);
  const variant = (variants[i % variants.length] ?? "").split(" ").filter((f) => f !== "");
  const origin = await startOrigin(scenario.cacheControl, scenario.originLatencyMs);
  const dir = join(TMP_DIR, `spike-profile-${run}`);
  const context = { origin, config: configFor(scenario), label: `spike-lab-${name}` };
  let sample: Sample | undefined;
  if (name === "bare-node") {
    // What herdless answers for the key once it has it, from a throwaway herdless.
    const herdless = await startRuntime("node", context);
    await captureSample(`${herdless.targets[0]}${path}`, HOST);
    sample = await captureSample(`${herdless.targets[0]}${path}`, HOST);
    await herdless.stop();
  }
  const flags = [...values.flag, ...variant, ...(values.prof ? ["--cpu-prof", "--cpu-prof-dir", dir] : [])];
  let runtime: { targets: string[]; servers: Awaited<ReturnType<typeof startHerdless>>[]; stop(): Promise<void> };
  if (name === "node" && flags.length > 0) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const file = writeConfig(context, { ...context.config, origin: { ...context.config.origin!, url: origin.url } });
    const server = await startHerdless("herdless", file, undefined, flags);
    runtime = { targets: [server.ready], servers: [server], stop: () => server.stop() };
  } else {
    runtime = await startRuntime(name, { ...context, ...(sample ? { sample } : {}) });
  }
  try {
    if (values.warm) await runLoad({ ...load, paths: [`/cold-process${path}`], targets: runtime.targets, host: HOST });
    await origin.reset();
    const server = runtime.servers[0]!;
    const cpu0 = server.cpuMs();
    const threads0 = threadCpuMs(server.pgid);
    const loadAverage = loadavg()[0] ?? 0;
    const outputBefore = server.output().length;
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const result = await runLoad({ ...load, targets: runtime.targets, host: HOST });
    const toUs = Number(process.hrtime.bigint() / 1000n);
    const cpu = server.cpuMs() - cpu0;
    const threads = [...threadCpuMs(server.pgid)]
      .map(([tid, ms]) => ms - (threads0.get(tid) ?? 0))
      .filter((ms) => ms > 0)
      .sort((a, b) => b - a);
    const stats = await origin.stats();
    const classes = Object.entries(result.latencyByCacheStatus ?? {})
      .map(([k, l]) => `${k} ×${result.byCacheStatus[k]}: p50 ${l.p50Ms} p99 ${l.p99Ms} max ${l.maxMs}`)
      .join(" | ");
    console.log(
      `${name}${variant.length > 0 ? ` ${variant.join(" ")}` : ""} run ${run} (load ${loadAverage.toFixed(1)}): p50 ${result.latency.p50Ms} p99 ${result.latency.p99Ms} max ${result.latency.maxMs} ms, ${result.elapsedMs} ms in all, ${result.errors} errors, origin ${stats.requests}; server CPU ${cpu} ms (by thread ${threads.join(", ")}), load generator ${result.cpuMs} ms`,
    );
    console.log(`  ${classes}`);
    // With --trace-gc: V8's line per collection during the measured spike.
    for (const line of server.output().slice(outputBefore).split("\n"))
      if (/(Scavenge|Mark-Compact|Mark-sweep|Mark-Sweep)/.test(line)) console.log(`  gc: ${line.trim()}`);
    if (values.prof) {
      await runtime.stop();
      for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) {
        const summary = readProfile(join(dir, file), { fromUs, toUs }, NODE_DIST);
        if (summary.busyMs < 20) continue;
        console.log(`  ${file} (window ${fromUs}–${toUs} µs)`);
        console.log(profileMarkdown(summary).join("\n"));
      }
    }
  } finally {
    await runtime.stop();
    await origin.server.stop();
  }
}
process.exit(0);
