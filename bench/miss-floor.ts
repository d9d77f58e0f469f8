/**
 * What any Worker pays for a cold miss in this workerd, before herdless does anything: the
 * floor under the `cold-misses` scenario's Worker row, and what a new Durable Object's part
 * of it is made of. One origin that answers after 20 ms, one keep-alive connection per
 * target, every request a new key; the variants are interleaved request by request (and
 * across the workerds below), so the machine's load falls on each alike:
 *
 * - `direct`: the origin itself;
 * - `proxy`: a Worker that fetches the origin and returns its answer;
 * - `cache`: also looks the key up in the Cache API first (a miss) and puts the answer
 *   there behind the response (`ctx.waitUntil`), as a cache must;
 * - `cache + warm object`: also calls one Durable Object that is already running (the same
 *   one for every key) and does nothing: the call alone;
 * - `cache + new object`: also calls a new Durable Object (one per key, as herdless's
 *   coordinator is) that does nothing, before the fetch;
 * - `cache + new object + 1 put`: that object also writes one value (`storage.put`): its
 *   first storage transaction;
 * - `cache + new object + 4 tables`: that object creates 4 tables with one row each instead
 *   (SQLite storage only), as a new key's coordinator made for its lease, lease counter,
 *   entry and body.
 * - `cache + new object fetches`: the new object fetches the origin itself and hands the
 *   bytes back, as herdless's coordinator does (the Worker does not fetch);
 * - `cache + new object → warm object, fetches`: that object first calls a running object
 *   (one for every key, as herdless's origin guard is), then fetches: herdless's 4 sequential
 *   hops per cold miss (`cache.match`, the key's object, the guard, the origin) with no work
 *   in any of them, the floor of the design itself.
 *
 * A herdless bundle given as the third argument runs in a workerd of its own (as
 * bench/miss-ab.ts runs it: tmpfs, one data center, without the bench's meter), interleaved
 * with the rest, so herdless is read against the floor of the same run.
 *
 * Each Worker variant runs in up to three workerds, one per Durable Object storage:
 *
 * - `tmpfs`: SQLite-backed objects whose files are on /dev/shm (what the bench uses);
 * - `disk`: the same on this machine's disk (os.tmpdir(), what `npm start` and Miniflare's
 *   default use: wrangler keeps them in .wrangler/state);
 * - `memory`: objects with in-memory storage and no SQLite file at all (Miniflare's
 *   unsafeEphemeralDurableObjects; workerd offers no SQL API there, so no `4 tables`).
 *
 * workerd creates a SQLite-backed object's database file (and its -wal and -shm files) when
 * the object is constructed, before its first storage call; `memory` takes that away and
 * leaves the object's construction and the call.
 *
 * "before origin" is from the client's send until the origin saw the request, "after" from
 * the origin's answer until the client had all of it (one monotonic clock, same process).
 *
 *   flock /work/bench.lock node --import tsx bench/miss-floor.ts [rounds] [tmpfs,disk,memory] [herdless worker.js]
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Log, LogLevel, Miniflare } from "miniflare";
import { ROOT, startTsServer } from "./processes.ts";
import { HERDLESS_CONFIG } from "./scenarios.ts";
import type { WorkerHostSpec } from "./worker-host.ts";

const ORIGIN_LATENCY_MS = 20;
const WARM_UP_ROUNDS = 30;
const rounds = Number(process.argv[2] ?? 200);
const STORAGES = ["tmpfs", "disk", "memory"] as const;
type Storage = (typeof STORAGES)[number];
const storages = (process.argv[3] ?? "tmpfs,memory").split(",") as Storage[];
for (const s of storages) if (!STORAGES.includes(s)) throw new Error(`storage must be one of ${STORAGES.join(", ")}`);
const herdlessBundle = process.argv[4];
if (herdlessBundle !== undefined && !existsSync(herdlessBundle))
  throw new Error(
    `no bundle at ${herdlessBundle} (build one: wrangler deploy --dry-run --outdir <dir under this checkout>)`,
  );

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** When the origin received each path and when it answered. */
const seen = new Map<string, { at: number; answered: number }>();
const body = "x".repeat(1024);
const origin = createServer((req, res) => {
  const at = nowMs();
  setTimeout(() => {
    seen.set(req.url ?? "", { at, answered: nowMs() });
    res.writeHead(200, { "cache-control": "max-age=60", "content-length": body.length });
    res.end(body);
  }, ORIGIN_LATENCY_MS);
});
await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
const originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;

// `?object=new|warm` calls an object at all; `&put` makes it write one value, `&tables=N` N tables;
// `&fetch` has the object fetch the origin, `&guard` has it call the running object first.
const script = `
import { DurableObject } from "cloudflare:workers";
export class Key extends DurableObject {
  async fill(tables, put, path, guard) {
    if (put) await this.ctx.storage.put("k", 1);
    for (let i = 0; i < tables; i++) {
      this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t" + i + " (key TEXT PRIMARY KEY, v INTEGER NOT NULL)");
      this.ctx.storage.sql.exec("INSERT INTO t" + i + " (key, v) VALUES (?, ?)", "k", 1);
    }
    if (guard) await this.env.KEY.get(this.env.KEY.idFromName("warm")).fill(0, false);
    if (path === undefined) return undefined;
    const answer = await fetch(this.env.ORIGIN + path);
    return { status: answer.status, bytes: await answer.arrayBuffer() };
  }
}
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const cached = url.searchParams.has("cache");
    const cache = cached ? await caches.open("floor") : undefined;
    const key = "https://floor.internal" + url.pathname;
    if (cache && (await cache.match(key))) return new Response("hit");
    const object = url.searchParams.get("object");
    let fetched;
    if (object) {
      const name = object === "warm" ? "warm" : url.pathname;
      fetched = await env.KEY.get(env.KEY.idFromName(name)).fill(
        Number(url.searchParams.get("tables") ?? 0),
        url.searchParams.has("put"),
        url.searchParams.has("fetch") ? url.pathname : undefined,
        url.searchParams.has("guard"),
      );
    }
    const answer = fetched ? new Response(fetched.bytes, { status: fetched.status }) : await fetch(env.ORIGIN + url.pathname);
    if (!cache) return answer;
    const bytes = await answer.arrayBuffer();
    ctx.waitUntil(cache.put(key, new Response(bytes, { headers: { "cache-control": "max-age=60" } })));
    return new Response(bytes, answer);
  },
};`;

async function startWorkerd(storage: Storage): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(storage === "disk" ? join(tmpdir(), "herdless-floor-") : "/dev/shm/herdless-floor-");
  const mf = new Miniflare({
    workers: [
      {
        name: "floor",
        modules: true,
        script,
        compatibilityDate: "2026-04-20",
        bindings: { ORIGIN: originUrl },
        durableObjects: { KEY: { className: "Key", useSQLite: storage !== "memory" } },
        unsafeEphemeralDurableObjects: storage === "memory",
        unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      },
    ],
    cf: false,
    log: new Log(LogLevel.WARN),
    durableObjectsPersist: join(dir, "do"),
    cachePersist: join(dir, "cache"),
  });
  await mf.ready;
  const url = (await mf.unsafeGetDirectURL("floor")).origin;
  return {
    url,
    stop: async () => {
      await mf.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** herdless's Worker as bench/miss-ab.ts runs it: its own workerd, one data center, storage on tmpfs, no meter. */
async function startHerdless(bundlePath: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const storageDir = mkdtempSync("/dev/shm/herdless-floor-");
  const compatibilityDate =
    /"compatibility_date"\s*:\s*"([^"]+)"/.exec(readFileSync(join(ROOT, "wrangler.jsonc"), "utf8"))?.[1] ??
    "2026-04-20";
  const spec: WorkerHostSpec = {
    bundlePath,
    compatibilityDate,
    originUrl,
    config: HERDLESS_CONFIG,
    dataCenters: 1,
    storageDir,
    meter: false,
  };
  const server = await startTsServer(
    "workerd",
    "bench/worker-host.ts",
    [JSON.stringify(spec)],
    /workers listening (\{.*\})/,
  );
  return {
    url: (JSON.parse(server.ready) as { dataCenters: string[] }).dataCenters[0]!,
    stop: async () => {
      await server.stop();
      rmSync(storageDir, { recursive: true, force: true });
    },
  };
}

const WORKER_VARIANTS = [
  { name: "proxy", query: "", sql: false },
  { name: "cache", query: "?cache", sql: false },
  { name: "cache + warm object", query: "?cache&object=warm", sql: false },
  { name: "cache + new object", query: "?cache&object=new", sql: false },
  { name: "cache + new object + 1 put", query: "?cache&object=new&put", sql: false },
  { name: "cache + new object + 4 tables", query: "?cache&object=new&tables=4", sql: true },
  { name: "cache + new object fetches", query: "?cache&object=new&fetch", sql: false },
  { name: "cache + new object → warm object, fetches", query: "?cache&object=new&fetch&guard", sql: false },
];
const workerds = await Promise.all(storages.map(async (storage) => ({ storage, ...(await startWorkerd(storage)) })));
const herdless = herdlessBundle === undefined ? undefined : await startHerdless(herdlessBundle);
const targets = [
  { name: "direct", url: `${originUrl}`, query: "" },
  ...(herdless ? [{ name: "herdless (tmpfs, unmetered)", url: herdless.url, query: "" }] : []),
  ...workerds.flatMap((w) =>
    WORKER_VARIANTS.filter((v) => !v.sql || w.storage !== "memory").map((v) => ({
      name: `${v.name} (${w.storage})`,
      url: w.url,
      query: v.query,
    })),
  ),
];

const agents = new Map(targets.map((v) => [v.name, new Agent({ keepAlive: true, maxSockets: 1 })]));

function miss(
  target: (typeof targets)[number],
  path: string,
): Promise<{ total: number; before: number; after: number }> {
  return new Promise((resolve, reject) => {
    const sent = nowMs();
    const req = request(`${target.url}${path}${target.query}`, { agent: agents.get(target.name) }, (res) => {
      res.resume();
      res.on("end", () => {
        const done = nowMs();
        const at = seen.get(path);
        if (!at) return reject(new Error(`the origin never saw ${path}`));
        resolve({ total: done - sent, before: at.at - sent, after: done - at.answered });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const samples = new Map(
  targets.map((v) => [v.name, { total: [] as number[], before: [] as number[], after: [] as number[] }]),
);
const loadBefore = loadavg()[0] ?? 0;
try {
  for (let round = 0; round < WARM_UP_ROUNDS + rounds; round++) {
    // Each round in another order: no variant always follows the same one.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const [i, target] of order.entries()) {
      const measured = await miss(target, `/r${round}/v${i}`);
      if (round < WARM_UP_ROUNDS) continue;
      const s = samples.get(target.name)!;
      s.total.push(measured.total);
      s.before.push(measured.before);
      s.after.push(measured.after);
    }
  }
} finally {
  for (const w of workerds) await w.stop();
  await herdless?.stop();
  origin.close();
}
const loadAfter = loadavg()[0] ?? 0;

const quantile = (values: number[], q: number): number =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))] ?? NaN;
const direct = quantile(samples.get("direct")!.total, 0.5);
console.log(
  `${rounds} misses per variant, origin ${ORIGIN_LATENCY_MS} ms, load average ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}\n`,
);
console.log("| variant (storage) | p50 ms | p99 ms | added p50 vs direct | before origin p50 | after origin p50 |");
console.log("|---|---|---|---|---|---|");
for (const target of targets) {
  const s = samples.get(target.name)!;
  const p50 = quantile(s.total, 0.5);
  console.log(
    `| ${target.name} | ${p50.toFixed(2)} | ${quantile(s.total, 0.99).toFixed(2)} | ${(p50 - direct).toFixed(2)} | ${quantile(s.before, 0.5).toFixed(2)} | ${quantile(s.after, 0.5).toFixed(2)} |`,
  );
}
