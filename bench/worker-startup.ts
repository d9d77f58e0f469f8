/**
 * How long the Worker takes to start: `node --import tsx bench/worker-startup.ts [--bundle OLD.js] [--rounds 7] [--json]`
 *
 * Bundles the Worker as a deploy would (`wrangler deploy --dry-run`), then, in rounds that
 * alternate the candidates (the machine is noisy), starts a fresh workerd through Miniflare
 * with one Worker and times its readiness plus the first request (which parses the config,
 * once per isolate). A bare Worker is timed the same way, so what workerd itself costs can
 * be told apart from what the bundle costs: compiling and evaluating its code. `--bundle`
 * adds an older bundle (for example one built before a change) to compare against.
 *
 * workerd's own start swings by seconds on a loaded machine, so the bundle's part is also
 * measured alone, in CPU time: V8 parsing, linking and evaluating the module (with
 * `cloudflare:workers` stubbed) in this Node process, which is the work every isolate does
 * before its first request. That needs `node --experimental-vm-modules`; without it only
 * the workerd timing is printed. `--json` prints one JSON line instead ({@link WorkerStartup}):
 * `npm run bench` runs it so for its start-up section.
 */
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";
import { Log, LogLevel, Miniflare, type WorkerOptions } from "miniflare";
import { bundleWorker } from "./worker-runtime.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    bundle: { type: "string", multiple: true },
    rounds: { type: "string", default: "7" },
    json: { type: "boolean", default: false },
  },
});
const current = bundleWorker();
const candidates: { name: string; worker: Omit<WorkerOptions, "name"> }[] = [
  {
    name: "bare Worker",
    worker: { modules: true, script: "export default { fetch() { return new Response('ok'); } };" },
  },
  ...[current.path, ...(values.bundle ?? [])].map((path) => ({
    name: path,
    worker: {
      modules: true,
      scriptPath: path,
      // The bundle may sit anywhere (an older build in /tmp): its directory is its module root.
      modulesRoot: dirname(path),
      bindings: { ORIGIN_URL: "http://127.0.0.1:9" },
      durableObjects: {
        COORDINATOR: { className: "KeyCoordinatorObject", useSQLite: true },
        GUARD: { className: "OriginGuardObject", useSQLite: true },
        PURGES: { className: "PurgeRegistryObject", useSQLite: true },
        STATS: { className: "StatsObject", useSQLite: true },
      },
    } satisfies Omit<WorkerOptions, "name">,
  })),
];

async function startOnce(worker: Omit<WorkerOptions, "name">): Promise<number> {
  const started = performance.now();
  const mf = new Miniflare({
    workers: [{ name: "w", compatibilityDate: current.compatibilityDate, ...worker } as WorkerOptions],
    cf: false,
    log: new Log(LogLevel.ERROR),
    unsafeEphemeralDurableObjects: true,
  });
  await mf.ready;
  // The admin path without a token: the config is parsed, nothing else is reached.
  const res = await mf.dispatchFetch("http://edge.test/__herdless/stats");
  const text = await res.text();
  // 404 "admin API is disabled" from herdless (the config parsed), or the bare Worker's "ok".
  if (res.status !== 404 && text !== "ok") throw new Error(`the Worker did not start: ${res.status} ${text}`);
  const elapsed = performance.now() - started;
  await mf.dispose();
  return elapsed;
}

/** CPU ms to parse, link and evaluate `path` as a module, as an isolate does at start. */
async function evaluateCpuMs(path: string): Promise<number> {
  const vm = await import("node:vm");
  const { SourceTextModule, SyntheticModule } = vm as unknown as {
    SourceTextModule: new (code: string, options: { context: object }) => VmModule;
    SyntheticModule: new (
      exports: string[],
      evaluate: (this: VmModule) => void,
      options: { context: object },
    ) => VmModule;
  };
  const code = readFileSync(path, "utf8");
  const context = vm.createContext({
    ...globalThis,
    URL,
    Response,
    Request,
    Headers,
    TextEncoder,
    TextDecoder,
    crypto,
  });
  const before = process.cpuUsage();
  const module = new SourceTextModule(code, { context });
  await module.link(() => {
    const stub = new SyntheticModule(
      ["DurableObject"],
      function () {
        this.setExport("DurableObject", class {});
      },
      { context },
    );
    return stub;
  });
  await module.evaluate();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}
interface VmModule {
  link(linker: () => VmModule): Promise<void>;
  evaluate(): Promise<void>;
  setExport(name: string, value: unknown): void;
}

/** What `--json` prints. */
export interface WorkerStartup {
  rounds: number;
  /** the bare Worker first, then the bundle(s) */
  candidates: Array<{ name: string; bytes?: number; gzipBytes?: number; medianMs: number; overBareMs: number }>;
  /** parse + link + evaluate of each bundle, CPU ms (median of 15); absent without --experimental-vm-modules */
  evaluateCpuMs?: Record<string, number>;
}

const rounds = Number(values.rounds);
const times = new Map<string, number[]>(candidates.map((c) => [c.name, []]));
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? candidates : [...candidates].reverse();
  for (const candidate of order) times.get(candidate.name)!.push(await startOnce(candidate.worker));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const bareMs = median(times.get("bare Worker")!);
const result: WorkerStartup = {
  rounds,
  candidates: candidates.map((candidate) => {
    const ms = median(times.get(candidate.name)!);
    const path = candidate.worker.scriptPath;
    return {
      name: candidate.name,
      ...(path === undefined ? {} : { bytes: statSync(path).size, gzipBytes: gzipSync(readFileSync(path)).length }),
      medianMs: Math.round(ms),
      overBareMs: Math.round(ms - bareMs),
    };
  }),
};
if (process.execArgv.includes("--experimental-vm-modules")) {
  const paths = [current.path, ...(values.bundle ?? [])];
  const cpu = new Map<string, number[]>(paths.map((p) => [p, []]));
  for (let round = 0; round < 15; round++)
    for (const path of round % 2 === 0 ? paths : [...paths].reverse()) cpu.get(path)!.push(await evaluateCpuMs(path));
  result.evaluateCpuMs = Object.fromEntries(paths.map((p) => [p, Number(median(cpu.get(p)!).toFixed(1))]));
}
if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
else {
  const lines = [
    `| Worker | bundle bytes | gzip bytes | start + first request, median of ${rounds} (ms) | over a bare Worker (ms) |`,
    "|---|---|---|---|---|",
    ...result.candidates.map(
      (c) => `| ${c.name} | ${c.bytes ?? ""} | ${c.gzipBytes ?? ""} | ${c.medianMs} | ${c.overBareMs} |`,
    ),
  ];
  if (result.evaluateCpuMs) {
    lines.push("", "| bundle | parse + link + evaluate, CPU ms, median of 15 |", "|---|---|");
    for (const [path, ms] of Object.entries(result.evaluateCpuMs)) lines.push(`| ${path} | ${ms} |`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}
