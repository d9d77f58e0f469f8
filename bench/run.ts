/**
 * `npm run bench [-- [NAME …] --scenario NAME[,NAME] --runtime NAME[,NAME] --quick]` (NAME may also be
 * `memory` or `startup`, which have runners of their own)
 *
 * Drives the fragile origin through each scenario × runtime (see scenarios.ts), then writes
 * bench/results/<timestamp>.json, latest.json, latest.md and one <scenario>.svg each.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runCell, type Samples } from "./cell.ts";
import { runHitPairs } from "./hit-pairs.ts";
import { nginxPath } from "./nginx.ts";
import { varnishPath } from "./varnish.ts";
import { measureStartup } from "./startup.ts";
import { ORIGIN_CRASH_ABOVE, ORIGIN_LATENCY_MS } from "./origin.ts";
import { memoryFlood, memoryReport } from "./memory-flood.ts";
import { installReaper, ROOT } from "./processes.ts";
import { markdown, targets } from "./report.ts";
import { hasRedisServer } from "./runtimes.ts";
import "./protection-scenarios.ts";
import { HERDLESS_CONFIG, SCENARIOS, scenarioByName, type Scenario } from "./scenarios.ts";
import { originChart } from "./svg.ts";
import type { BenchRun, CellResult, RuntimeName } from "./types.ts";
import { bundleWorker, useDoStorage } from "./worker-runtime.ts";

const RESULTS = join(ROOT, "bench/results");
function writeReport(run: BenchRun, scenarios: Scenario[]): void {
  writeFileSync(join(RESULTS, "latest.md"), markdown(run));
  for (const scenario of scenarios) {
    const cells = run.cells.filter((c) => c.scenario === scenario.name);
    writeFileSync(
      join(RESULTS, `${scenario.name}.svg`),
      originChart(`${scenario.name}: origin requests per second${run.quick ? " (quick)" : ""}`, cells),
    );
  }
}

const RUNTIMES: RuntimeName[] = [
  "direct",
  "node",
  "fleet",
  "worker",
  "bare-node",
  "bare-fleet",
  "bare-worker",
  "nginx",
  "varnish",
];

const USAGE =
  "usage: npm run bench -- [NAME …] [--scenario NAME[,NAME]] [--runtime NAME[,NAME]] [--quick] [--render FILE] [--do-storage memory|disk] [--node-flag FLAG]";

const OPTIONS = {
  scenario: { type: "string", multiple: true },
  runtime: { type: "string", multiple: true },
  quick: { type: "boolean", default: false },
  /** extra Node flags for the herdless process of the memory scenario, e.g. --node-flag=--max-old-space-size=128 */
  "node-flag": { type: "string", multiple: true },
  /** re-render latest.md and the charts from a results JSON, without running anything */
  render: { type: "string" },
  /** the Worker's Durable Object storage: memory (tmpfs, the default) or disk (see worker-host.ts) */
  "do-storage": { type: "string", default: "memory" },
} as const;

/** The command line, or the usage and exit 2 for one it cannot read (not a stack trace). */
function commandLine() {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    process.stdout.write(`${USAGE}\nscenarios: ${SCENARIOS.map((s) => s.name).join(", ")}, memory, startup\n`);
    process.exit(0);
  }
  try {
    return parseArgs({
      args: process.argv.slice(2),
      // `npm run bench -- broken-url` names a scenario like `--scenario broken-url`.
      allowPositionals: true,
      options: OPTIONS,
    });
  } catch (error) {
    return refuse((error as Error).message);
  }
}

/** A command line that cannot be run: what is wrong and the usage, exit 2. */
function refuse(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values, positionals } = commandLine();
const split = (list: string[] | undefined): string[] | undefined =>
  list?.flatMap((v) => v.split(",")).filter((v) => v !== "");
const asked = [...(values.scenario ?? []), ...positionals];
const named = asked.length > 0 ? split(asked) : undefined;
// `memory` is not a load scenario against the fragile origin but a flood of distinct URLs
// against one process, measuring its RSS (memory-flood.ts); it runs on its own.
if (named?.includes("memory")) {
  installReaper();
  const result = await memoryFlood(
    values.quick === true,
    (line) => process.stderr.write(`${line}\n`),
    values["node-flag"] ?? [],
  );
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/memory.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(ROOT, "bench/results/memory.md"), memoryReport(result));
  process.stdout.write(memoryReport(result));
  if (named.length === 1) process.exit(result.withinBound ? 0 : 1);
}
/** The scenarios asked for, each with its baselines (run first, in the same run), once each. */
function withBaselines(names: string[]): Scenario[] {
  const known = new Set([...SCENARIOS.map((s) => s.name), ...OWN_RUNNERS]);
  const unknown = names.find((n) => !known.has(n));
  if (unknown !== undefined) refuse(`unknown scenario "${unknown}"; known: ${[...known].join(", ")}`);
  const wanted = names.flatMap((n) => [...(scenarioByName(n).baselines ?? []), n]);
  return [...new Set(wanted)].map(scenarioByName);
}
// `startup` is not a load scenario either: bundle size and start times (startup.ts); it runs with everything.
const OWN_RUNNERS = ["memory", "startup"];
const wantsStartup = named === undefined || named.includes("startup");
const scenarios = named === undefined ? SCENARIOS : withBaselines(named.filter((n) => !OWN_RUNNERS.includes(n)));
const runtimeFilter = split(values.runtime);
for (const r of runtimeFilter ?? [])
  if (!RUNTIMES.includes(r as RuntimeName)) refuse(`unknown runtime "${r}"; known: ${RUNTIMES.join(", ")}`);
const quick = values.quick === true;
const doStorage = values["do-storage"];
if (doStorage !== "memory" && doStorage !== "disk") refuse(`--do-storage must be memory or disk, got "${doStorage}"`);
useDoStorage(doStorage);

if (values.render !== undefined) {
  const saved = JSON.parse(readFileSync(values.render, "utf8")) as BenchRun;
  writeReport(
    saved,
    SCENARIOS.filter((s) => saved.cells.some((c) => c.scenario === s.name)),
  );
  process.exit(0);
}

installReaper();
const log = (text: string): void => void process.stderr.write(`${text}\n`);
const started = Date.now();

const unavailable = new Map<RuntimeName, string>();
if (!hasRedisServer()) unavailable.set("fleet", "redis-server is not on PATH (apt-get install -y redis-server)");
if (nginxPath() === undefined)
  unavailable.set("nginx", "nginx is not on PATH (optional peer: apt-get install -y nginx-light)");
if (varnishPath() === undefined)
  unavailable.set("varnish", "varnishd is not on PATH (optional peer: apt-get install -y varnish)");
const wanted = (r: RuntimeName): boolean => runtimeFilter === undefined || runtimeFilter.includes(r);
if (scenarios.some((s) => s.runtimes.some((r) => (r === "worker" || r === "bare-worker") && wanted(r)))) {
  try {
    log("bundling the Worker (wrangler deploy --dry-run)…");
    bundleWorker();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    unavailable.set("worker", reason);
    unavailable.set("bare-worker", reason);
  }
}

const run: BenchRun = {
  startedAt: new Date(started).toISOString(),
  quick,
  machine: { cpus: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` },
  originOptions: { latencyMs: ORIGIN_LATENCY_MS, crashAbove: ORIGIN_CRASH_ABOVE, etag: true, bodyBytes: 512 },
  herdlessConfig: HERDLESS_CONFIG,
  doStorage,
  cells: [],
};
const samples: Samples = new Map();

/** The hit path's baselines run inside their herdless runtime's pairs (hit-pairs.ts). */
const PAIRED: Partial<Record<RuntimeName, "node" | "worker">> = { "bare-node": "node", "bare-worker": "worker" };

for (const scenario of scenarios) {
  const rounds = scenario.repeats ?? 1;
  for (let round = 0; round < rounds; round++)
    for (const runtime of scenario.runtimes.filter(wanted)) {
      const skip = unavailable.get(runtime);
      if (scenario.pairs !== undefined && (runtime === "node" || runtime === "worker") && skip === undefined) {
        const t0 = Date.now();
        try {
          const cells = await runHitPairs(scenario, runtime, quick, scenario.pairs, log);
          run.cells.push(...cells);
          log(`${scenario.name} × ${runtime} and its bare server: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          log(`${scenario.name} × ${runtime}: FAILED ${reason.slice(0, 500)}`);
          run.cells.push({ scenario: scenario.name, runtime, skipped: reason, notes: [] });
        }
        continue;
      }
      if (scenario.pairs !== undefined && PAIRED[runtime] !== undefined) continue;
      if (skip !== undefined) {
        log(`${scenario.name} × ${runtime}: skipped (${skip.split("\n")[0]})`);
        run.cells.push({ scenario: scenario.name, runtime, skipped: skip, notes: [] });
        continue;
      }
      const t0 = Date.now();
      let cell: CellResult;
      try {
        cell = await runCell(scenario, runtime, quick, samples);
      } catch (error) {
        cell = {
          scenario: scenario.name,
          runtime,
          skipped: error instanceof Error ? error.message : String(error),
          notes: [],
        };
      }
      if (rounds > 1) cell.round = round;
      run.cells.push(cell);
      const l = cell.load;
      const name = rounds > 1 ? `${runtime} (round ${round + 1} of ${rounds})` : runtime;
      log(
        cell.skipped !== undefined
          ? `${scenario.name} × ${runtime}: FAILED ${cell.skipped.slice(0, 500)}`
          : `${scenario.name} × ${name}: ${l?.throughputRps} req/s, ${l?.errors} errors, ${l?.shed} shed, origin ${cell.origin?.requests} (peak ${cell.origin?.peakInFlight}, crashes ${cell.origin?.crashes}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      );
    }
}

if (wantsStartup) {
  log("start-up: the Worker bundle and workerd, the Node CLI…");
  run.startup = await measureStartup(quick);
}

mkdirSync(RESULTS, { recursive: true });
const stamp = run.startedAt.replace(/[:.]/g, "-");
const json = `${JSON.stringify(run, null, 2)}\n`;
writeFileSync(join(RESULTS, `${stamp}.json`), json);
writeFileSync(join(RESULTS, "latest.json"), json);
writeReport(run, scenarios);
for (const t of targets(run)) log(`${t.verdict}  ${t.name}: ${t.detail}`);
log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; report: bench/results/latest.md`);
process.exit(0);
