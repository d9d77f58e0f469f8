/**
 * A V8 CPU profile (`node --cpu-prof`, a `.cpuprofile` file) summarized for the report: where
 * a server's CPU went, by function (self time) and by owner (herdless's own code, Node's
 * internals, V8 itself, dependencies). Idle time is left out: shares are of busy time.
 *
 *   node --import tsx bench/cpu-profile.ts FILE.cpuprofile     # prints the summary as Markdown
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT } from "./processes.ts";

/** The parts of the `.cpuprofile` format (Chrome DevTools Protocol `Profiler.Profile`) read here. */
interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }>;
  /** µs on the machine's monotonic clock (the one `process.hrtime` reads) */
  startTime: number;
  samples: number[];
  /** µs since the previous sample */
  timeDeltas: number[];
}

/** Samples taken between these instants (µs on the monotonic clock, `process.hrtime.bigint() / 1000n`) count. */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

/** Who owns a function: the share of busy time the report shows for each. */
export type Owner = "herdless" | "node" | "v8" | "dependencies";

export interface ProfileSummary {
  /** busy (non-idle) ms sampled */
  busyMs: number;
  /** share of busy time, 0..1, per owner */
  byOwner: Record<Owner, number>;
  /** the functions with the most self time, most first */
  top: Array<{ name: string; where: string; owner: Owner; share: number }>;
}

/** Paths relative to ROOT under which functions are herdless's own: its sources, and their build. */
function herdlessDirs(built: string | undefined): string[] {
  return ["src/", ...(built === undefined ? [] : [`${relative(ROOT, built)}/`])];
}

function pathOf(url: string): string {
  return relative(ROOT, url.startsWith("file://") ? fileURLToPath(url) : url);
}

function ownerOf(url: string, functionName: string, mine: string[]): Owner {
  if (url === "") return functionName.startsWith("(") || functionName === "" ? "v8" : "node";
  if (url.startsWith("node:")) return "node";
  const path = pathOf(url);
  return mine.some((dir) => path.startsWith(dir)) ? "herdless" : "dependencies";
}

function whereOf(url: string, line: number, mine: string[]): string {
  if (url === "") return "native";
  if (url.startsWith("node:")) return `${url}:${line + 1}`;
  let path = pathOf(url);
  // The build's files by their place in the package (dist/…), not the bench's scratch folder.
  const built = mine.find((dir) => dir !== "src/" && path.startsWith(dir));
  if (built !== undefined) path = `dist/${path.slice(built.length)}`;
  return `${path}:${line + 1}`;
}

/** Self time per function (by name and place) and per owner, from the profile's samples. */
export function summarizeProfile(
  profile: CpuProfile,
  window?: ProfileWindow,
  built?: string,
  topN = 12,
): ProfileSummary {
  const mine = herdlessDirs(built);
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  let at = profile.startTime;
  const selfUs = new Map<string, { name: string; where: string; owner: Owner; us: number }>();
  const owners: Record<Owner, number> = { herdless: 0, node: 0, v8: 0, dependencies: 0 };
  let busyUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byId.get(profile.samples[i]!);
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    // A sample's delta is the time since the one before; the next sample's delta is this one's duration.
    const us = profile.timeDeltas[i + 1] ?? 0;
    if (!frame || frame.functionName === "(idle)" || us <= 0) continue;
    const owner = ownerOf(frame.url, frame.functionName, mine);
    const name = frame.functionName === "" ? "(anonymous)" : frame.functionName;
    const where = whereOf(frame.url, frame.lineNumber, mine);
    const key = `${name} ${where}`;
    const slot = selfUs.get(key) ?? { name, where, owner, us: 0 };
    slot.us += us;
    selfUs.set(key, slot);
    owners[owner] += us;
    busyUs += us;
  }
  const share = (us: number) => (busyUs === 0 ? 0 : us / busyUs);
  return {
    busyMs: busyUs / 1000,
    byOwner: {
      herdless: share(owners.herdless),
      node: share(owners.node),
      v8: share(owners.v8),
      dependencies: share(owners.dependencies),
    },
    top: [...selfUs.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((f) => ({ name: f.name, where: f.where, owner: f.owner, share: share(f.us) })),
  };
}

/** The profile in `path`, over `window` if given; functions under `built` (a build of src/) count as herdless's. */
export function readProfile(path: string, window?: ProfileWindow, built?: string): ProfileSummary {
  return summarizeProfile(JSON.parse(readFileSync(path, "utf8")) as CpuProfile, window, built);
}

const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;

/** The summary as Markdown lines for latest.md. */
export function profileMarkdown(summary: ProfileSummary): string[] {
  const o = summary.byOwner;
  return [
    `Busy CPU sampled: ${summary.busyMs.toFixed(0)} ms. Self time by owner: herdless (its built src/) ${pct(o.herdless)}, Node internals (node:*, native bindings) ${pct(o.node)}, V8 (GC, compiled code stubs, program) ${pct(o.v8)}, dependencies and the bench's loader ${pct(o.dependencies)}.`,
    "",
    "| function | where | owner | self time |",
    "|---|---|---|---|",
    ...summary.top.map((f) => `| \`${f.name}\` | ${f.where} | ${f.owner} | ${pct(f.share)} |`),
  ];
}

if (process.argv[1]?.endsWith("cpu-profile.ts") && process.argv[2] !== undefined)
  process.stdout.write(`${profileMarkdown(readProfile(process.argv[2])).join("\n")}\n`);
