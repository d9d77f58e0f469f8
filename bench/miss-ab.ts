/**
 * Two builds of the herdless Worker against each other on cold misses: each bundle in a
 * workerd of its own (bench/worker-host.ts, one data center, storage on tmpfs, as the bench
 * runs it), one origin that answers after 20 ms, one keep-alive connection per side, every
 * request a new key, the sides alternated request by request (and the origin asked directly
 * between them), so the machine's load falls on both alike. Two identical bundles differ by
 * about 1 ms at p50 on this machine: a change smaller than that needs several runs.
 * Bundles must sit under this checkout (workerd will not load modules outside it).
 *
 *   node node_modules/wrangler/bin/wrangler.js deploy --dry-run --outdir bench/results/tmp/ab/a   # each tree, into this one
 *   flock /work/bench.lock node --import tsx bench/miss-ab.ts bench/results/tmp/ab/{a,b}/worker.js [misses] [block]
 *
 * `block` (default 1): misses in a row per side. With 1 each side's miss follows the other
 * side's and the direct one, ~50 ms after its own previous miss, whose work behind its
 * answer is done by then; with e.g. 10 each follows its own previous miss at once, as in
 * the `cold-misses` scenario, and pays for that work sharing workerd's one thread.
 *
 * A path given as `unmetered:<path>` runs without the bench's meter (bench/worker-meter.js).
 *
 * Prints per side: p50/p99 of the miss, added p50/p99 over the direct origin, "before origin"
 * p50 (client send until the origin saw the request, one monotonic clock), "after origin" p50
 * (the origin's answer until the client had all of it), and workerd's CPU per miss (from /proc).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";
import { ROOT, startTsServer, type Server } from "./processes.ts";
import { HERDLESS_CONFIG } from "./scenarios.ts";
import type { WorkerHostSpec } from "./worker-host.ts";

const ORIGIN_LATENCY_MS = 20;
const WARM_UP = 30;
// `unmetered:<path>` runs that bundle without the bench's meter (worker-host.ts).
const UNMETERED = "unmetered:";
const [bundleA, bundleB] = [process.argv[2], process.argv[3]].map((arg) => arg?.replace(UNMETERED, ""));
const metered = [process.argv[2], process.argv[3]].map((arg) => !arg?.startsWith(UNMETERED));
const misses = Number(process.argv[4] ?? 200);
// Misses in a row per side: 1 alternates every request; more lets each side's miss follow its own
// previous one, whose work behind its answer then shares workerd's thread with it (as in the scenario).
const block = Number(process.argv[5] ?? 1);
if (!bundleA || !bundleB || !existsSync(bundleA) || !existsSync(bundleB) || !(misses > 0) || !(block >= 1))
  throw new Error("usage: miss-ab.ts <bundle A worker.js> <bundle B worker.js> [misses] [misses in a row per side]");

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
/** When the origin received each path and when it answered. */
const seen = new Map<string, number>();
const answered = new Map<string, number>();
const body = "x".repeat(1024);
const origin = createServer((req, res) => {
  seen.set(req.url ?? "", nowMs());
  setTimeout(() => {
    answered.set(req.url ?? "", nowMs());
    res.writeHead(200, { "cache-control": "max-age=60", "content-length": body.length });
    res.end(body);
  }, ORIGIN_LATENCY_MS);
});
await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
const originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
const compatibilityDate =
  /"compatibility_date"\s*:\s*"([^"]+)"/.exec(readFileSync(join(ROOT, "wrangler.jsonc"), "utf8"))?.[1] ?? "2026-04-20";

async function startSide(
  bundlePath: string,
  meter: boolean,
): Promise<{ server: Server; url: string; storage: string }> {
  const storage = mkdtempSync("/dev/shm/herdless-ab-");
  const spec: WorkerHostSpec = {
    bundlePath,
    compatibilityDate,
    originUrl,
    config: HERDLESS_CONFIG,
    dataCenters: 1,
    storageDir: storage,
    meter,
  };
  const server = await startTsServer(
    "workerd",
    "bench/worker-host.ts",
    [JSON.stringify(spec)],
    /workers listening (\{.*\})/,
  );
  const url = (JSON.parse(server.ready) as { dataCenters: string[] }).dataCenters[0]!;
  return { server, url, storage };
}

const sides = [
  { name: "A", ...(await startSide(bundleA, metered[0]!)) },
  { name: "B", ...(await startSide(bundleB, metered[1]!)) },
];
const targets = [{ name: "direct", url: originUrl }, ...sides];
const agents = new Map(targets.map((t) => [t.name, new Agent({ keepAlive: true, maxSockets: 1 })]));

function miss(
  target: (typeof targets)[number],
  path: string,
): Promise<{ total: number; before: number; after: number }> {
  return new Promise((resolve, reject) => {
    const sent = nowMs();
    const req = request(`${target.url}${path}`, { agent: agents.get(target.name) }, (res) => {
      res.resume();
      res.on("end", () => {
        const at = seen.get(path);
        if (at === undefined || res.statusCode !== 200)
          return reject(
            new Error(`${target.name} ${path}: status ${res.statusCode}, origin saw it: ${at !== undefined}`),
          );
        const done = nowMs();
        resolve({ total: done - sent, before: at - sent, after: done - (answered.get(path) ?? NaN) });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const samples = new Map(
  targets.map((t) => [t.name, { total: [] as number[], before: [] as number[], after: [] as number[] }]),
);
const cpuAt = (side: (typeof sides)[number]) => side.server.cpuMs();
let cpuStart = sides.map(cpuAt);
const loadBefore = loadavg()[0] ?? 0;
try {
  const measure = async (round: number, target: (typeof targets)[number], counted: boolean) => {
    const measured = await miss(target, `/ab/r${round}/${target.name}`);
    if (!counted) return;
    samples.get(target.name)!.total.push(measured.total);
    samples.get(target.name)!.before.push(measured.before);
    samples.get(target.name)!.after.push(measured.after);
  };
  for (let round = 0; round < WARM_UP; round++) for (const target of targets) await measure(round, target, false);
  cpuStart = sides.map(cpuAt);
  for (let round = 0; round < Math.ceil(misses / block); round++) {
    // A then B, then B then A: neither always follows the other.
    const order = round % 2 === 0 ? targets : [targets[0]!, targets[2]!, targets[1]!];
    for (const target of order)
      for (let i = 0; i < block; i++) await measure(WARM_UP + round * block + i, target, true);
  }
  const cpuPerMiss = sides.map((side, i) => (cpuAt(side) - cpuStart[i]!) / misses);
  const q = (values: number[], p: number): number =>
    [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] ?? NaN;
  const direct = samples.get("direct")!.total;
  console.log(
    `${misses} misses per side, origin ${ORIGIN_LATENCY_MS} ms, load ${loadBefore.toFixed(1)} → ${(loadavg()[0] ?? 0).toFixed(1)}`,
  );
  console.log(`A ${process.argv[2]}\nB ${process.argv[3]}\n${block} misses in a row per side\n`);
  console.log(
    "| side | p50 ms | p99 ms | added p50 | added p99 | before origin p50 | after origin p50 | workerd CPU ms/miss |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const target of targets) {
    const s = samples.get(target.name)!;
    const side = sides.findIndex((x) => x.name === target.name);
    console.log(
      `| ${target.name} | ${q(s.total, 0.5).toFixed(2)} | ${q(s.total, 0.99).toFixed(2)} | ${(q(s.total, 0.5) - q(direct, 0.5)).toFixed(2)} | ${(q(s.total, 0.99) - q(direct, 0.99)).toFixed(2)} | ${q(s.before, 0.5).toFixed(2)} | ${q(s.after, 0.5).toFixed(2)} | ${side < 0 ? "–" : cpuPerMiss[side]!.toFixed(1)} |`,
    );
  }
} finally {
  for (const side of sides) {
    await side.server.stop();
    rmSync(side.storage, { recursive: true, force: true });
  }
  origin.close();
}
