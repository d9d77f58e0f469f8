/** The Markdown report: targets with PASS/MISS, then one table per scenario. */
import { fmt } from "./format.ts";
import { fleetTailNotes, fleetTailTargets } from "./fleet-tail.ts";
import { originText, protectionTargets, waitedText } from "./protection-targets.ts";
import { HERDLESS_CONFIG, HERDLESS_RUNTIMES, originCounted, SCENARIOS } from "./scenarios.ts";
import { profileMarkdown } from "./cpu-profile.ts";
import { BUNDLE_LIMIT_BYTES } from "./startup.ts";
import type { BenchRun, CellResult, HitPair, RuntimeName, ScenarioName, Target } from "./types.ts";
import { workerCostSection, workerTargets } from "./worker-report.ts";

const perRequestUs = (cpuMs: number | undefined, requests: number): string =>
  cpuMs === undefined || requests === 0 ? "–" : fmt((cpuMs * 1000) / requests);

function cellOf(run: BenchRun, scenario: ScenarioName, runtime: RuntimeName): CellResult | undefined {
  return run.cells.find((c) => c.scenario === scenario && c.runtime === runtime);
}

/** herdless's cells of a scenario, every round of it (scenario.repeats), runtime by runtime. */
function everyRound(run: BenchRun, scenario: ScenarioName): CellResult[] {
  return HERDLESS_RUNTIMES.flatMap((runtime) =>
    run.cells.filter((c) => c.scenario === scenario && c.runtime === runtime),
  );
}

function ranScenario(run: BenchRun, scenario: ScenarioName): boolean {
  return run.cells.some((c) => c.scenario === scenario);
}

/** Why a cell has no numbers, or undefined when it has them. */
function missing(cell: CellResult | undefined): string | undefined {
  if (cell === undefined) return "not run";
  if (cell.skipped !== undefined) return `not run: ${cell.skipped.split("\n")[0]}`;
  if (cell.load === undefined || cell.origin === undefined) return "no result";
  return undefined;
}

/** The hit path's floors: herdless's throughput against its bare server's, in the same run (issue 17). */
const HIT_FLOORS = [
  ["node", "bare-node", 0.95],
  ["worker", "bare-worker", 0.9],
] as const;

/** The median of the pairs' throughput ratios: one slow moment of the machine moves one pair, not the verdict. */
export function pairRatio(pairs: HitPair[]): number {
  const ratios = pairs.map((p) => p.rps / p.bareRps).sort((a, b) => a - b);
  const mid = Math.floor(ratios.length / 2);
  return ratios.length % 2 === 1 ? ratios[mid]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
}

/** Origin requests ÷ ideal, both over the window the ideal counts (the whole run, or after the load's warm-up). */
export function ratioToIdeal(cell: CellResult): number | undefined {
  const counted = originCounted(cell);
  if (cell.ideal === undefined || counted === undefined) return undefined;
  return counted / cell.ideal.requests;
}

export function targets(run: BenchRun): Target[] {
  const out: Target[] = [];
  for (const scenario of ["steady", "spike"] as const) {
    if (!ranScenario(run, scenario)) continue;
    for (const cell of everyRound(run, scenario)) {
      const why = missing(cell);
      const ratio = ratioToIdeal(cell);
      const name = `${scenario}: origin ÷ ideal ≤ 1.00 (${label(cell)})`;
      if (why !== undefined || ratio === undefined || cell.origin === undefined)
        out.push({ name, verdict: "MISS", detail: why ?? "no ideal" });
      else
        out.push({
          name,
          verdict: ratio <= 1 ? "PASS" : "MISS",
          detail:
            cell.ideal?.counts === "settled"
              ? `${originCounted(cell)} origin requests in the load's window (${cell.origin.requests} in the whole run) ÷ ${cell.ideal.requests} ideal = ${fmt(ratio, 2)}`
              : `${cell.origin.requests} origin requests ÷ ${cell.ideal?.requests} ideal = ${fmt(ratio, 2)}`,
        });
    }
  }
  for (const scenario of ["steady", "spike"] as const) {
    if (!ranScenario(run, scenario)) continue;
    for (const cell of everyRound(run, scenario)) {
      if (missing(cell) !== undefined || !cell.load || !cell.origin) continue;
      const pass = cell.load.errors === 0 && cell.origin.crashes === 0;
      out.push({
        name: `${scenario}: 0 client errors, 0 origin crashes (${label(cell)})`,
        verdict: pass ? "PASS" : "MISS",
        detail: `${cell.load.errors} errors, ${cell.load.shed} shed, ${cell.origin.crashes} crashes, origin peak in flight ${cell.origin.peakInFlight}`,
      });
    }
  }
  const nginx = cellOf(run, "spike", "nginx");
  if (nginx?.load && nginx.skipped === undefined) {
    // The Node server's target (issue 17); the table under the spike shows the others against nginx too.
    for (const runtime of ["node"] as const) {
      const cell = cellOf(run, "spike", runtime);
      if (!cell?.load || cell.skipped !== undefined) continue;
      // A bare node:http server replaying the answer: the part of the gap that is Node's, not herdless's.
      const bare = cellOf(run, "spike", "bare-node");
      const floor = bare?.load
        ? `; bare node:http replaying the answer: p99 ${bare.load.latency.p99Ms} ms, server CPU ${fmt(bare.serverCpuMs ?? 0, 0)} ms vs herdless ${fmt(cell.serverCpuMs ?? 0, 0)} and nginx ${fmt(nginx.serverCpuMs ?? 0, 0)} ms`
        : "";
      const cold =
        cell.coldProcess && nginx.coldProcess
          ? `; the first spike on the freshly started servers (another key, not judged): p99 ${cell.coldProcess.latency.p99Ms} vs nginx ${nginx.coldProcess.latency.p99Ms} ms, server CPU ${fmt(cell.coldProcess.serverCpuMs, 0)} vs ${fmt(nginx.coldProcess.serverCpuMs, 0)} ms`
          : "";
      out.push({
        name: `spike: ${runtime} p99 ≤ nginx's (same run)`,
        verdict: cell.load.latency.p99Ms <= nginx.load.latency.p99Ms && cell.load.errors === 0 ? "PASS" : "MISS",
        detail: `p99 ${cell.load.latency.p99Ms} vs ${nginx.load.latency.p99Ms} ms; p99.9 ${cell.load.latency.p999Ms} vs ${nginx.load.latency.p999Ms} ms; origin ${cell.origin?.requests} vs ${nginx.origin?.requests}${floor}${cold}`,
      });
    }
  }
  if (ranScenario(run, "outage")) {
    for (const runtime of HERDLESS_RUNTIMES) {
      const cell = cellOf(run, "outage", runtime);
      if (cell === undefined) continue;
      const why = missing(cell);
      const o = cell?.outage;
      const name = `outage: 0 client errors for cached keys, origin requests while down ≤ probes allowed (${runtime})`;
      if (why !== undefined || o === undefined) {
        out.push({ name, verdict: "MISS", detail: why ?? "no outage measured" });
        continue;
      }
      const pass = o.clientErrors === 0 && o.originRequestsWhileDown <= o.allowed;
      out.push({
        name,
        verdict: pass ? "PASS" : "MISS",
        detail: `${o.clientErrors} client errors (incl. shed); ${o.originRequestsWhileDown} origin requests in ${o.downMs / 1000} s down, allowed ${o.allowed} = ${o.formula}`,
      });
    }
  }
  if (ranScenario(run, "hit-path")) {
    for (const [runtime, bare, floor] of HIT_FLOORS) {
      const cell = cellOf(run, "hit-path", runtime);
      const base = cellOf(run, "hit-path", bare);
      if (cell === undefined && base === undefined) continue;
      const why = missing(cell) ?? missing(base);
      const name = `hit-path: ${runtime} ≥ ${floor}× ${bare} throughput`;
      if (why !== undefined || !cell?.load || !base?.load) {
        out.push({ name, verdict: "MISS", detail: why ?? "no result" });
        continue;
      }
      const clean = cell.load.errors === 0;
      const cpu = `server CPU ${perRequestUs(cell.serverCpuMs, cell.load.requests)} vs ${perRequestUs(base.serverCpuMs, base.load.requests)} µs/request`;
      const pairs = cell.pairs ?? [];
      if (pairs.length > 0) {
        const ratio = pairRatio(pairs);
        const each = pairs.map((p) => `${p.rps} ÷ ${p.bareRps} = ${fmt(p.rps / p.bareRps, 2)}`).join(" · ");
        out.push({
          name,
          verdict: ratio >= floor && clean ? "PASS" : "MISS",
          detail: `median of ${pairs.length} alternated pairs ${fmt(ratio, 2)}× (${each} req/s); ${cpu} (median rounds)${clean ? "" : `; ${cell.load.errors} errors`}`,
        });
        continue;
      }
      const ratio = cell.load.throughputRps / base.load.throughputRps;
      out.push({
        name,
        verdict: ratio >= floor && clean ? "PASS" : "MISS",
        detail: `${cell.load.throughputRps} ÷ ${base.load.throughputRps} req/s = ${fmt(ratio, 2)}×; ${cpu}${clean ? "" : `; ${cell.load.errors} errors`}`,
      });
    }
  }
  if (ranScenario(run, "key-explosion")) {
    const cap = HERDLESS_CONFIG.origin.maxConcurrency;
    for (const runtime of HERDLESS_RUNTIMES) {
      const cell = cellOf(run, "key-explosion", runtime);
      if (cell === undefined) continue;
      const why = missing(cell);
      const name = `key-explosion: origin in flight ≤ maxConcurrency ${cap}, 0 crashes (${runtime})`;
      if (why !== undefined || cell?.origin === undefined) {
        out.push({ name, verdict: "MISS", detail: why ?? "no result" });
        continue;
      }
      const pass = cell.origin.peakInFlight <= cap && cell.origin.crashes === 0;
      out.push({
        name,
        verdict: pass ? "PASS" : "MISS",
        detail: `peak in flight ${cell.origin.peakInFlight}, ${cell.origin.crashes} crashes`,
      });
    }
  }
  const bundle = run.startup?.worker?.candidates.find((c) => c.bytes !== undefined);
  if (run.startup !== undefined)
    out.push({
      name: `Worker bundle < ${BUNDLE_LIMIT_BYTES / 1000} KB`,
      verdict: bundle?.bytes !== undefined && bundle.bytes < BUNDLE_LIMIT_BYTES ? "PASS" : "MISS",
      detail:
        bundle?.bytes === undefined
          ? `not measured: ${(run.startup.workerError ?? "").split("\n")[0]}`
          : `${bundle.bytes} B (${bundle.gzipBytes} B gzipped)`,
    });
  out.push(...fleetTailTargets(run));
  out.push(...workerTargets(run));
  out.push(...protectionTargets(run));
  return out;
}

const HEADER =
  "| runtime | req/s | p50 ms | p99 ms | p99.9 ms | max ms | ok | shed | errors | origin req | 200 | 304 | failed | ÷ ideal | peak in-flight | crashes | server CPU µs/req | load-gen CPU µs/req | origin CPU ms |";
const RULE = `|${HEADER.split("|")
  .slice(1, -1)
  .map(() => "---")
  .join("|")}|`;

/** The runtime, and which of a scenario's alternated rounds (scenario.repeats) the cell is. */
const label = (cell: CellResult): string =>
  cell.round === undefined ? cell.runtime : `${cell.runtime} (round ${cell.round + 1})`;

function row(cell: CellResult): string {
  const why = missing(cell);
  if (why !== undefined || !cell.load || !cell.origin) return `| ${label(cell)} | ${why ?? ""} |${" |".repeat(17)}`;
  const l = cell.load;
  const o = cell.origin;
  const ratio = ratioToIdeal(cell);
  return `| ${label(cell)} | ${l.throughputRps} | ${l.latency.p50Ms} | ${l.latency.p99Ms} | ${l.latency.p999Ms ?? "–"} | ${l.latency.maxMs} | ${l.ok} | ${l.shed} | ${l.errors} | ${o.requests} | ${o.ok200} | ${o.notModified304} | ${o.failed} | ${ratio === undefined ? "–" : fmt(ratio, 2)} | ${o.peakInFlight} | ${o.crashes} | ${perRequestUs(cell.serverCpuMs, l.requests)} | ${perRequestUs(l.cpuMs, l.requests)} | ${cell.originCpuMs ?? "–"} |`;
}

export function markdown(run: BenchRun): string {
  const lines: string[] = [];
  lines.push(`# herdless bench — ${run.startedAt}${run.quick ? " (quick)" : ""}`, "");
  lines.push(
    `Machine: ${run.machine.cpus} CPUs, Node ${run.machine.node}, ${run.machine.platform}. Origin: ${JSON.stringify(run.originOptions)}. herdless config: \`${JSON.stringify(run.herdlessConfig)}\`.`,
    "",
  );
  lines.push("## Targets", "", "| target | result | detail |", "|---|---|---|");
  for (const t of targets(run)) lines.push(`| ${t.name} | **${t.verdict}** | ${t.detail} |`);
  lines.push("");
  for (const scenario of SCENARIOS) {
    const cells = run.cells.filter((c) => c.scenario === scenario.name);
    if (cells.length === 0) continue;
    lines.push(`## ${scenario.name}`, "", scenario.summary + ".", "");
    const ideal = cells.find((c) => c.ideal)?.ideal;
    if (ideal) lines.push(`Ideal origin requests: ${ideal.formula}.`, "");
    const budgets = cells.filter((c) => c.outage !== undefined && c.runtime !== "direct");
    if (budgets.length > 0) {
      const { probeIntervalMs } = run.herdlessConfig.breaker as { probeIntervalMs: number };
      lines.push(
        `Origin requests allowed while it is down, per breaker: the sick calls before the breaker opens (its run of failureThreshold sick calls from minFailingKeys keys must have lasted probeIntervalMs, ${probeIntervalMs} ms: meanwhile each key may be asked once, a key that has not failed is not held while the breaker is closed, so the keys + 1, or failureThreshold or minFailingKeys if larger) + ⌈(down − probeIntervalMs) ÷ probeIntervalMs⌉ probes, one per interval while open; times the breakers in front of the origin: ${budgets.map((c) => `${c.runtime} ${c.outage?.breakers ?? "?"}`).join(", ")}.`,
        "",
      );
    }
    lines.push(HEADER, RULE, ...cells.map(row), "");
    for (const cell of cells) {
      if (cell.outage) {
        const o = cell.outage;
        lines.push(
          `- ${label(cell)}: origin down from ${o.startMs / 1000} s for ${o.downMs / 1000} s; ${o.originRequestsWhileDown} origin requests while down (allowed ${o.allowed}); ${o.clientErrors} client errors + shed over the run.`,
        );
      }
      const cache = cell.load?.byCacheStatus;
      if (cache && Object.keys(cache).some((k) => k !== "none"))
        lines.push(
          `- ${label(cell)} responses by Cache-Status: ${Object.entries(cache)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}.`,
        );
      const l = cell.load;
      if (l?.ttfb)
        lines.push(
          `- ${label(cell)}: first body byte p50 ${l.ttfb.p50Ms} ms, p99 ${l.ttfb.p99Ms} ms (2xx answers); whole answer p50 ${l.latency.p50Ms} ms.`,
        );
      if (l && (l.breakerOpen ?? 0) > 0)
        lines.push(`- ${label(cell)}: ${l.breakerOpen} answers with detail=breaker-open.`);
      if (l && scenario.name.startsWith("hot-keys"))
        lines.push(`- ${label(cell)}: answers that waited on the origin: ${waitedText(l)}; ${originText(cell)}.`);
      lines.push(...fleetTailNotes(cell));
      for (const note of cell.notes) lines.push(`- ${label(cell)}: ${note}.`);
      if (cell.threadCpuMs && cell.threadCpuMs.length > 0)
        lines.push(
          `- ${label(cell)}: CPU by thread over the run, most first: ${cell.threadCpuMs.map((ms) => `${ms} ms`).join(", ")} (the first is the serving thread; the others are V8's helpers, parallel GC and concurrent compiling, and for herdless the main thread, idle while its worker thread serves).`,
        );
      const samples = cell.load?.networkErrorSamples ?? [];
      if (samples.length > 0)
        lines.push(`- ${label(cell)} network errors: ${samples.map((m) => `\`${m}\``).join(", ")}.`);
      if (cell.loadAverage)
        lines.push(
          `- ${label(cell)}: machine load average ${cell.loadAverage.map((v) => v.toFixed(1)).join(" → ")} (${run.machine.cpus} CPUs).`,
        );
    }
    const bare: Array<[RuntimeName, RuntimeName]> = [
      ["node", "bare-node"],
      ["fleet", "bare-fleet"],
      ["worker", "bare-worker"],
    ];
    for (const [a, b] of bare) {
      const ca = cells.find((c) => c.runtime === a)?.load;
      const cb = cells.find((c) => c.runtime === b)?.load;
      const sa = cells.find((c) => c.runtime === a)?.serverCpuMs;
      const sb = cells.find((c) => c.runtime === b)?.serverCpuMs;
      if (ca && cb) {
        const cpuRatio =
          sa !== undefined && sb !== undefined && sb > 0 ? fmt(sa / ca.requests / (sb / cb.requests), 2) : "–";
        lines.push(
          `- ${a} ÷ ${b}: throughput ${fmt(ca.throughputRps / cb.throughputRps, 2)}×, server CPU per request ${cpuRatio}×, p99 ${ca.latency.p99Ms} vs ${cb.latency.p99Ms} ms.`,
        );
      }
    }
    for (const cell of cells.filter((c) => c.pairs !== undefined)) {
      lines.push(
        "",
        `${cell.runtime} against its bare server, alternated rounds in the order run (req/s, server CPU µs per request, p99 ms):`,
        "",
        "| pair | herdless req/s | bare req/s | ratio | herdless CPU µs/req | bare CPU µs/req | herdless p99 | bare p99 |",
        "|---|---|---|---|---|---|---|---|",
        ...(cell.pairs ?? []).map(
          (p, i) =>
            `| ${i + 1} | ${p.rps} | ${p.bareRps} | ${fmt(p.rps / p.bareRps, 2)} | ${fmt(p.cpuUsPerRequest, 1)} | ${fmt(p.bareCpuUsPerRequest, 1)} | ${p.p99Ms} | ${p.bareP99Ms} |`,
        ),
      );
      if (cell.profile)
        lines.push(
          "",
          `### Where a ${cell.runtime} hit's CPU goes`,
          "",
          "One more herdless process (the built CLI) under `node --cpu-prof`, warmed and loaded like the pairs; its serving thread's samples over the load's window:",
          "",
          ...profileMarkdown(cell.profile),
        );
    }
    lines.push("", `![origin requests per second: ${scenario.name}](${scenario.name}.svg)`);
    lines.push("");
  }
  lines.push(...startupSection(run));
  lines.push(...workerCostSection(run));
  return `${lines.join("\n")}\n`;
}

/** Bundle size and start times (startup.ts). */
function startupSection(run: BenchRun): string[] {
  const s = run.startup;
  if (s === undefined) return [];
  const lines = ["## Start-up and bundle", ""];
  if (s.worker) {
    const w = s.worker;
    lines.push(
      `The Worker as \`wrangler deploy --dry-run\` bundles it; a fresh workerd (Miniflare) started and its first request answered, median of ${w.rounds} alternated rounds, against a bare Worker started the same way:`,
      "",
      "| Worker | bundle bytes | gzipped | start + first request ms | over a bare Worker ms | parse + link + evaluate CPU ms |",
      "|---|---|---|---|---|---|",
      ...w.candidates.map((c) => {
        const cpu = c.bytes === undefined ? "" : String(Object.values(w.evaluateCpuMs ?? {})[0] ?? "–");
        const name = c.bytes === undefined ? c.name : "herdless";
        return `| ${name} | ${c.bytes ?? ""} | ${c.gzipBytes ?? ""} | ${c.medianMs} | ${c.bytes === undefined ? "" : c.overBareMs} | ${cpu} |`;
      }),
      "",
    );
  } else lines.push(`Worker start not measured: ${(s.workerError ?? "").split("\n")[0]}`, "");
  if (s.node)
    lines.push(
      `The Node CLI (built as the package is), from spawn to its first answer (\`/__herdless/metrics\`), median of ${s.node.rounds}: **${s.node.herdlessMs} ms**, against ${s.node.bareMs} ms for a bare \`node:http\` server (\`node -e\`): herdless adds ${s.node.herdlessMs - s.node.bareMs} ms (its modules, the config check, the bounded-heap worker thread).`,
      "",
    );
  else lines.push(`Node start not measured: ${(s.nodeError ?? "").split("\n")[0]}`, "");
  return lines;
}
