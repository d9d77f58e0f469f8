/**
 * How long the Worker takes to start: `node --import tsx bench/worker-startup.ts [--bundle OLD.js] [--rounds 7]`
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
 * the workerd timing is printed.
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
  options: { bundle: { type: "string", multiple: true }, rounds: { type: "string", default: "7" } },
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

const rounds = Number(values.rounds);
const times = new Map<string, number[]>(candidates.map((c) => [c.name, []]));
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? candidates : [...candidates].reverse();
  for (const candidate of order) times.get(candidate.name)!.push(await startOnce(candidate.worker));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const bareMs = median(times.get("bare Worker")!);
const lines = [
  `| Worker | bundle bytes | gzip bytes | start + first request, median of ${rounds} (ms) | over a bare Worker (ms) |`,
  "|---|---|---|---|---|",
];
for (const candidate of candidates) {
  const ms = median(times.get(candidate.name)!);
  const path = candidate.worker.scriptPath;
  const size = path === undefined ? "" : String(statSync(path).size);
  const gzip = path === undefined ? "" : String(gzipSync(readFileSync(path)).length);
  lines.push(`| ${candidate.name} | ${size} | ${gzip} | ${ms.toFixed(0)} | ${(ms - bareMs).toFixed(0)} |`);
}
process.stdout.write(`${lines.join("\n")}\n`);

if (process.execArgv.includes("--experimental-vm-modules")) {
  const paths = [current.path, ...(values.bundle ?? [])];
  const cpu = new Map<string, number[]>(paths.map((p) => [p, []]));
  for (let round = 0; round < 15; round++)
    for (const path of round % 2 === 0 ? paths : [...paths].reverse()) cpu.get(path)!.push(await evaluateCpuMs(path));
  process.stdout.write(`\n| bundle | parse + link + evaluate, CPU ms, median of 15 |\n|---|---|\n`);
  for (const path of paths) process.stdout.write(`| ${path} | ${median(cpu.get(path)!).toFixed(1)} |\n`);
}
