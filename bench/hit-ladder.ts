/**
 * The Node hit path, bisected: a ladder of servers from the bare node:http baseline
 * (bare-node.ts) to herdless's CLI, one step closer to herdless each (ladder-server.ts), each
 * measured against the same bare server in alternated pairs under the hit path's load (raw
 * sockets, 100 connections, 1 KiB page, as `npm run bench -- hit-path`). The rung where the
 * ratio drops is where the cost is.
 *
 *   flock /work/bench.lock node --import tsx bench/hit-ladder.ts [--pairs 5] [--round-ms 3000] [--perf] [rung,rung,…]
 *
 * Rungs (default: all, in this order): bare-again (a second bare process: the noise),
 * bare-client (bare after one request of its own to the origin through node:http's client),
 * worker-limits, worker-default, shell, shell-modules, herdless-worker, cli-main, cli, and
 * cli-base when `HIT_LADDER_BASE_CLI` names another build's `node/bin.js` (a change's before:
 * `git archive` the old tree, `tsc -p tsconfig.build.json --outDir …`, and run `cli-base,cli`).
 * Prints one line per pair and a markdown table: per rung, the median of the pairs' req/s
 * ratios, and CPU µs per request of the whole process group (from /proc) and of the serving
 * thread alone, rung against bare.
 *
 * `--fresh-bare`: a new bare process for each rung (a process may draw Node's slow path at
 * any time, see "literal slow path" below; a fresh one keeps one draw from spoiling every rung).
 *
 * `--perf` (root, `perf` on PATH): every server runs with `--perf-basic-prof`, and after its
 * pairs each rung and the bare server get one more round each under `perf record -e
 * cpu-clock` on their serving thread: the symbols whose µs per request differ most between
 * the rung and bare are printed, and the totals by kind (JavaScript, V8 builtins, V8
 * runtime, GC, the rest of Node, kernel, libraries).
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import ts from "typescript";
import { captureSample, type Sample } from "./bare-node.ts";
import { runLoad } from "./cell.ts";
import { rawConnection } from "./raw-load.ts";
import type { Rung } from "./ladder-server.ts";
import { builtBareNode, builtCli, NODE_DIST } from "./node-build.ts";
import { median } from "./miss-trace.ts";
import { startOrigin } from "./origin.ts";
import {
  installReaper,
  LOOP_DELAY_PRELOAD,
  ROOT,
  startServer,
  threadCpuMs,
  TMP_DIR,
  type Server,
} from "./processes.ts";
import { HERDLESS_CONFIG, HOST } from "./scenarios.ts";

const PATH = "/hit/one?bytes=1024";
const CONNECTIONS = 100;

interface RungSpec {
  name: string;
  what: string;
  start(sample: Sample, config: Record<string, unknown>, configFile: string): Promise<Server>;
}

function builtLadderServer(): string {
  const source = readFileSync(join(ROOT, "bench/ladder-server.ts"), "utf8");
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  mkdirSync(NODE_DIST, { recursive: true });
  const file = join(NODE_DIST, "ladder-server.mjs");
  writeFileSync(file, outputText);
  return file;
}

/** Node flags of every server started: `--perf-basic-prof` under `--perf`. */
let nodeFlags: string[] = [];

const LADDER_READY = /ladder listening on (http:\/\/\S+)/;
const HERDLESS_READY = /"msg":"herdless listening".*?"url":"([^"]+)"/;

function bare(sample: Sample, name = "bare"): Promise<Server> {
  return startServer({
    name,
    command: process.execPath,
    args: [...LOOP_DELAY_PRELOAD, ...nodeFlags, builtBareNode(), JSON.stringify(sample)],
    readyPattern: /bare node listening on (http:\/\/\S+)/,
  });
}

function ladder(name: string, rung: Rung): RungSpec["start"] {
  return (sample, config) =>
    startServer({
      name,
      command: process.execPath,
      args: [...LOOP_DELAY_PRELOAD, ...nodeFlags, builtLadderServer(), JSON.stringify({ rung, sample, config })],
      readyPattern: LADDER_READY,
    });
}

function cli(name: string, flags: string[], bin: () => string = builtCli): RungSpec["start"] {
  return (_sample, _config, configFile) =>
    startServer({
      name,
      command: process.execPath,
      args: [...LOOP_DELAY_PRELOAD, ...nodeFlags, ...flags, bin(), "--config", configFile, "--port", "0"],
      readyPattern: HERDLESS_READY,
    });
}

const RUNGS: RungSpec[] = [
  {
    name: "bare-again",
    what: "a second bare process (the noise between two processes)",
    start: (s) => bare(s, "bare-again"),
  },
  {
    name: "bare-client",
    what: "bare's server after one GET to the origin through node:http's client (as herdless's fill makes)",
    start: ladder("bare-client", { thread: "main", server: "bare", clientCall: true }),
  },
  {
    name: "worker-limits",
    what: "bare's server in a worker thread with herdless's resourceLimits (old 344 MiB, young 24 MiB)",
    start: ladder("worker-limits", { thread: "worker-herdless-limits", server: "bare" }),
  },
  {
    name: "worker-default",
    what: "bare's server in a worker thread with Node's default limits",
    start: ladder("worker-default", { thread: "worker-default-limits", server: "bare" }),
  },
  {
    name: "shell",
    what: "worker-limits + herdless's server shell (keepAliveTimeout 65 s in the options, closing check, CONNECT listener, undici loaded), bare's handler",
    start: ladder("shell", { thread: "worker-herdless-limits", server: "herdless-shell" }),
  },
  {
    name: "shell-modules",
    what: "shell + herdless's modules loaded and a localStack built, unused",
    start: ladder("shell-modules", { thread: "worker-herdless-limits", server: "herdless-shell", loadHerdless: true }),
  },
  {
    name: "no-resume",
    what: "shell-modules, the bare handler without req.resume() (herdless leaves the request to Node)",
    start: ladder("no-resume", {
      thread: "worker-herdless-limits",
      server: "herdless-shell",
      loadHerdless: true,
      handler: "bare-no-resume",
    }),
  },
  {
    name: "checks",
    what: "no-resume + herdless's handler's steps before the hit path (latency timer, field scan, Host and target checks)",
    start: ladder("checks", {
      thread: "worker-herdless-limits",
      server: "herdless-shell",
      loadHerdless: true,
      handler: "checks",
    }),
  },
  {
    name: "hit-path",
    what: "checks + herdless's HitPath answering (its misses to herdless's handler)",
    start: ladder("hit-path", {
      thread: "worker-herdless-limits",
      server: "herdless-shell",
      loadHerdless: true,
      handler: "hit-path",
    }),
  },
  {
    name: "herdless-worker",
    what: "herdless's startServer + localStack in a worker with its limits, no CLI",
    start: ladder("herdless-worker", { thread: "worker-herdless-limits", server: "herdless" }),
  },
  {
    name: "herdless-main",
    what: "herdless's startServer + localStack on the main thread, Node's default heap, no CLI",
    start: ladder("herdless-main", { thread: "main", server: "herdless" }),
  },
  {
    name: "cli-main",
    what: "herdless's CLI on the main thread (--max-old-space-size=344 --max-semi-space-size=8: the operator sized the heap)",
    start: cli("cli-main", ["--max-old-space-size=344", "--max-semi-space-size=8"]),
  },
  {
    name: "cli",
    what: "herdless's CLI as the bench runs it (serving in its bounded-heap worker)",
    start: cli("cli", []),
  },
  {
    name: "cli-base",
    what: "another build of the CLI, `HIT_LADDER_BASE_CLI` (its bin.js): a change's before, in the same hold as `cli`",
    start: cli("cli-base", [], () => process.env.HIT_LADDER_BASE_CLI ?? fail("cli-base needs HIT_LADDER_BASE_CLI")),
  },
];

interface Round {
  rps: number;
  requests: number;
  errors: number;
  cpuUs: number;
  threadUs: number;
  /** the busiest thread of the round: the serving thread */
  tid: number;
}

/** One round of the hit-path load on `server`: req/s, and CPU per request of the group and of its busiest thread. */
async function round(server: Server, durationMs: number): Promise<Round> {
  const cpu0 = server.cpuMs();
  const threads0 = threadCpuMs(server.pgid);
  const load = await runLoad({
    targets: [server.ready],
    host: HOST,
    connections: CONNECTIONS,
    durationMs,
    paths: [PATH],
    timeoutMs: 15_000,
    raw: true,
  });
  const cpu = server.cpuMs() - cpu0;
  let busiest = 0;
  let tid = server.pgid;
  for (const [id, ms] of threadCpuMs(server.pgid)) {
    const used = ms - (threads0.get(id) ?? 0);
    if (used > busiest) [busiest, tid] = [used, id];
  }
  const per = (ms: number) => (load.requests === 0 ? 0 : Math.round((ms * 1000 * 10) / load.requests) / 10);
  return {
    rps: load.throughputRps,
    requests: load.requests,
    errors: load.errors,
    cpuUs: per(cpu),
    threadUs: per(busiest),
    tid,
  };
}

const PERF_HZ = 4000;

/** Samples of one thread by `kind|symbol`, and the requests it answered meanwhile. */
interface Profile {
  requests: number;
  rps: number;
  samples: Map<string, number>;
}

function kindOf(symbol: string, dso: string): string {
  if (dso.startsWith("[kernel")) return "kernel";
  if (/perf-\d+\.map/.test(dso)) return "JavaScript";
  if (!dso.endsWith("/node")) return "libraries";
  // V8's runtime for an object literal whose computed keys' feedback went megamorphic: Node's
  // `process.nextTick` literal in a process that drew it (see bench/README.md, "what was cut").
  if (
    /DefineKeyedOwnPropertyInLiteral|MigrateToMap|FeedbackNexus|TransitionsAccessor|UpdateDescriptorForValue|WriteDataValue|TransitionToDataProperty|AddDataProperty/.test(
      symbol,
    )
  )
    return "literal slow path";
  if (symbol.startsWith("Builtins_")) return "V8 builtins";
  if (/Scaveng|Heap::|GCTracer|MarkCompact|Sweeper|Evacuat|MinorMC|ConcurrentMarking/.test(symbol)) return "GC";
  if (/Runtime_|v8::internal::(JSObject|Map|FeedbackNexus|LookupIterator|Object)::/.test(symbol)) return "V8 runtime";
  return "Node and V8 C++";
}

/** `perf record` on thread `tid` until the returned function is called, which resolves with its samples by `kind|symbol`. */
async function perfRecording(tid: number): Promise<() => Promise<Map<string, number>>> {
  const file = join(TMP_DIR, `hit-ladder-${tid}.perf`);
  const perf = spawn(
    "perf",
    ["record", "-q", "-e", "cpu-clock", "-F", String(PERF_HZ), "-t", String(tid), "-o", file],
    {
      stdio: "ignore",
    },
  );
  const exited = new Promise<void>((resolve) => perf.once("exit", () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 300));
  return async () => {
    perf.kill("SIGINT");
    await exited;
    const script = spawnSync("perf", ["script", "-i", file, "-F", "ip,sym,dso"], {
      encoding: "utf8",
      maxBuffer: 512 * 1024 * 1024,
    });
    const samples = new Map<string, number>();
    for (const line of script.stdout.split("\n")) {
      const match = /^\s*[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)\s*$/.exec(line);
      if (!match) continue;
      const symbol = match[1]!.replace(/\+0x[0-9a-f]+$/, "");
      const key = `${kindOf(symbol, match[2]!)}|${symbol}`;
      samples.set(key, (samples.get(key) ?? 0) + 1);
    }
    return samples;
  };
}

/** One more round of `server` with `perf record` on its serving thread `tid`. */
async function profiledRound(server: Server, tid: number, durationMs: number): Promise<Profile> {
  const stop = await perfRecording(tid);
  const measured = await round(server, durationMs);
  return { requests: measured.requests, rps: measured.rps, samples: await stop() };
}

/** µs per request of each key of `p` (or of each kind, with `byKind`). */
function perRequest(p: Profile, byKind = false): Map<string, number> {
  const out = new Map<string, number>();
  for (const [key, n] of p.samples) {
    const k = byKind ? key.split("|")[0]! : key;
    out.set(k, (out.get(k) ?? 0) + (n * 1e6) / PERF_HZ / Math.max(1, p.requests));
  }
  return out;
}

function printDifference(name: string, ours: Profile, theirs: Profile): void {
  const kinds = [perRequest(ours, true), perRequest(theirs, true)] as const;
  const kindNames = [...new Set([...kinds[0].keys(), ...kinds[1].keys()])].sort();
  console.log(
    `\n${name} vs bare under perf: ${ours.rps} vs ${theirs.rps} req/s; serving thread by kind, µs/request (${name} / bare):`,
  );
  console.log(kindNames.map((k) => `${k} ${r2(kinds[0].get(k) ?? 0)} / ${r2(kinds[1].get(k) ?? 0)}`).join("; "));
  const a = perRequest(ours);
  const b = perRequest(theirs);
  const keys = [...new Set([...a.keys(), ...b.keys()])];
  keys.sort((x, y) => Math.abs((a.get(y) ?? 0) - (b.get(y) ?? 0)) - Math.abs((a.get(x) ?? 0) - (b.get(x) ?? 0)));
  for (const key of keys.slice(0, 25))
    console.log(
      `  ${r2((a.get(key) ?? 0) - (b.get(key) ?? 0))
        .toFixed(2)
        .padStart(6)} µs  ${r2(a.get(key) ?? 0)} / ${r2(b.get(key) ?? 0)}  ${key.slice(0, 160)}`,
    );
}

/** What one server did over one window of a together run. */
interface Share {
  requests: number;
  cpuUs: number;
  threadUs: number;
  /** the busiest thread of the window: the serving thread */
  tid: number;
}

/**
 * `--together`: the rung and bare loaded at the same time, 50 connections each from this
 * process, for `rounds` back-to-back windows of `roundMs`. Both share the same moments of
 * the machine and the same CPUs, so the scheduler gives them like CPU time, and the ratio of
 * their requests in a window is the inverse ratio of their cost per request: a steadier
 * instrument than rounds taken one after the other on a machine other work shares.
 */
async function together(a: Server, b: Server, rounds: number, roundMs: number): Promise<Array<[Share, Share]>> {
  const servers = [a, b];
  const counts = [0, 0];
  let errors = 0;
  let running = true;
  const loops = servers.flatMap((server, side) =>
    Array.from({ length: CONNECTIONS / 2 }, () =>
      rawConnection(
        new URL(server.ready),
        HOST,
        () => PATH,
        () => running,
        15_000,
        (outcome) => {
          if (outcome instanceof Error || outcome.status !== 200) errors++;
          else counts[side]!++;
        },
      ),
    ),
  );
  const snapshot = () =>
    servers.map((server, side) => ({ count: counts[side]!, cpu: server.cpuMs(), threads: threadCpuMs(server.pgid) }));
  const out: Array<[Share, Share]> = [];
  await new Promise((resolve) => setTimeout(resolve, 1000));
  let before = snapshot();
  for (let i = 0; i < rounds; i++) {
    await new Promise((resolve) => setTimeout(resolve, roundMs));
    const after = snapshot();
    const shares = after.map((now, side): Share => {
      const then = before[side]!;
      const requests = now.count - then.count;
      let busiest = 0;
      let tid = servers[side]!.pgid;
      for (const [id, ms] of now.threads) {
        const used = ms - (then.threads.get(id) ?? 0);
        if (used > busiest) [busiest, tid] = [used, id];
      }
      const per = (ms: number) => (requests === 0 ? 0 : Math.round((ms * 1000 * 10) / requests) / 10);
      return { requests, cpuUs: per(now.cpu - then.cpu), threadUs: per(busiest), tid };
    });
    out.push([shares[0]!, shares[1]!]);
    before = after;
  }
  running = false;
  await Promise.all(loops);
  if (errors > 0) console.log(`  ${errors} errors`);
  return out;
}

const r2 = (n: number) => Math.round(n * 100) / 100;
const r1 = (n: number) => Math.round(n * 10) / 10;

async function main(): Promise<void> {
  installReaper();
  const argv = process.argv.slice(2);
  let pairs = 5;
  let roundMs = 3000;
  let names: string[] | undefined;
  let simultaneous = false;
  let freshBare = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--pairs") pairs = Number(argv[++i]);
    else if (argv[i] === "--round-ms") roundMs = Number(argv[++i]);
    else if (argv[i] === "--perf") nodeFlags = ["--perf-basic-prof"];
    else if (argv[i] === "--together") simultaneous = true;
    else if (argv[i] === "--fresh-bare") freshBare = true;
    else names = argv[i]!.split(",");
  }
  const rungs = names
    ? names.map((n) => RUNGS.find((r) => r.name === n) ?? fail(`unknown rung ${n}`))
    : RUNGS.filter((r) => r.name !== "cli-base" || process.env.HIT_LADDER_BASE_CLI !== undefined);
  builtCli();
  builtBareNode();
  builtLadderServer();
  const origin = await startOrigin("max-age=3600");
  const config = { ...HERDLESS_CONFIG, origin: { ...HERDLESS_CONFIG.origin, url: origin.url } };
  mkdirSync(TMP_DIR, { recursive: true });
  const configFile = join(TMP_DIR, "hit-ladder.json");
  writeFileSync(configFile, JSON.stringify(config));
  const stops: Array<() => Promise<void>> = [];
  const started = new Date().toISOString();
  const load0 = loadavg()[0]!;
  const rows: string[] = [];
  try {
    // herdless's answer, which every bare handler replays.
    const first = await cli("sample", [])({ status: 0, headers: [], bodyBase64: "" }, config, configFile);
    await captureSample(`${first.ready}${PATH}`, HOST);
    const sample = await captureSample(`${first.ready}${PATH}`, HOST);
    await first.stop();
    let base = await bare(sample);
    stops.push(() => base.stop());
    let baseTid = (await round(base, 2000)).tid;
    for (const [index, rung] of rungs.entries()) {
      if (freshBare && index > 0) {
        await base.stop();
        base = await bare(sample);
        baseTid = (await round(base, 2000)).tid;
      }
      const server = await rung.start(sample, config, configFile);
      try {
        await captureSample(`${server.ready}${PATH}`, HOST);
        const serverTid = (await round(server, 2000)).tid;
        if (simultaneous) {
          // Under --perf, both serving threads are sampled over all the windows.
          const recording =
            nodeFlags.length > 0 ? await Promise.all([perfRecording(serverTid), perfRecording(baseTid)]) : undefined;
          const windows = await together(server, base, pairs, roundMs);
          if (recording) {
            const [oursSamples, theirsSamples] = await Promise.all(recording.map((stop) => stop()));
            const profile = (side: 0 | 1, samples: Map<string, number>): Profile => {
              const requests = windows.reduce((sum, w) => sum + w[side].requests, 0);
              return { requests, rps: Math.round((requests * 1000) / (roundMs * windows.length)), samples };
            };
            printDifference(rung.name, profile(0, oursSamples!), profile(1, theirsSamples!));
          }
          for (const [i, [o, t]] of windows.entries())
            console.log(
              `${rung.name} window ${i + 1}: ${o.requests} vs ${t.requests} requests (${r2(o.requests / t.requests)}), CPU ${o.cpuUs} vs ${t.cpuUs} µs/req, serving thread ${o.threadUs} vs ${t.threadUs}`,
            );
          const ratios = windows.map(([o, t]) => o.requests / t.requests);
          const reqs = (side: 0 | 1) => median(windows.map((w) => (w[side].requests * 1000) / roundMs));
          const cpu = (side: 0 | 1, f: "cpuUs" | "threadUs") => r1(median(windows.map((w) => w[side][f])));
          rows.push(
            `| ${rung.name} | ${r2(median(ratios))}× (${ratios.map(r2).join(", ")}) | ${Math.round(reqs(0))} / ${Math.round(reqs(1))} | ${cpu(0, "cpuUs")} vs ${cpu(1, "cpuUs")} | ${cpu(0, "threadUs")} vs ${cpu(1, "threadUs")} | ${r1(loadavg()[0]!)} |`,
          );
          console.log(rows[rows.length - 1]);
          continue;
        }
        const ours: Round[] = [];
        const theirs: Round[] = [];
        for (let i = 0; i < pairs; i++) {
          const rungFirst = i % 2 === 0;
          if (rungFirst) ours.push(await round(server, roundMs));
          theirs.push(await round(base, roundMs));
          if (!rungFirst) ours.push(await round(server, roundMs));
          const o = ours[i]!;
          const t = theirs[i]!;
          console.log(
            `${rung.name} pair ${i + 1}: ${o.rps} vs ${t.rps} req/s (${r2(o.rps / t.rps)}), CPU ${o.cpuUs} vs ${t.cpuUs} µs/req, serving thread ${o.threadUs} vs ${t.threadUs}${o.errors + t.errors > 0 ? `, errors ${o.errors}/${t.errors}` : ""}`,
          );
        }
        const ratios = ours.map((o, i) => o.rps / theirs[i]!.rps);
        rows.push(
          `| ${rung.name} | ${r2(median(ratios))}× (${ratios.map(r2).join(", ")}) | ${median(ours.map((o) => o.rps))} / ${median(theirs.map((t) => t.rps))} | ${r1(median(ours.map((o) => o.cpuUs)))} vs ${r1(median(theirs.map((t) => t.cpuUs)))} | ${r1(median(ours.map((o) => o.threadUs)))} vs ${r1(median(theirs.map((t) => t.threadUs)))} | ${r1(loadavg()[0]!)} |`,
        );
        console.log(rows[rows.length - 1]);
        if (nodeFlags.length > 0) {
          const ourProfile = await profiledRound(server, ours[ours.length - 1]!.tid, roundMs);
          const theirProfile = await profiledRound(base, theirs[theirs.length - 1]!.tid, roundMs);
          printDifference(rung.name, ourProfile, theirProfile);
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    await origin.server.stop();
  }
  console.log(
    `\nhit ladder, ${started}, ${pairs} ${simultaneous ? "simultaneous windows" : "alternated pairs"} of ${roundMs} ms per rung, load ${r1(load0)} at the start`,
  );
  console.log(
    "| rung | req/s ÷ bare, median (pairs) | req/s rung / bare, medians | CPU µs/req, group: rung vs bare | serving thread µs/req: rung vs bare | load after |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
  for (const rung of rungs) console.log(`- ${rung.name}: ${rung.what}`);
}

function fail(message: string): never {
  throw new Error(message);
}

await main();
