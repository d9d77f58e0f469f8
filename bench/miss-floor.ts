/**
 * What any Worker pays for a cold miss in this workerd, before herdless does anything: the
 * floor under the `cold-misses` scenario's Worker row. One workerd (Miniflare, storage on
 * tmpfs as the bench keeps it), one origin that answers after 20 ms, one keep-alive
 * connection, every request a new key; the variants are interleaved request by request, so
 * the machine's load falls on each alike:
 *
 * - `direct`: the origin itself;
 * - `proxy`: a Worker that fetches the origin and returns its answer;
 * - `cache`: also looks the key up in the Cache API first (a miss) and puts the answer
 *   there behind the response (`ctx.waitUntil`), as a cache must;
 * - `cache + new object`: also calls a new SQLite-backed Durable Object (one per key, as
 *   herdless's coordinator is) that does nothing, before the fetch;
 * - `cache + new object + 4 tables`: that object also creates 4 tables with one row each,
 *   as a new key's coordinator does for its lease, lease counter, entry and body.
 *
 * "before origin" is from the client's send until the origin saw the request, "after" from
 * the origin's answer until the client had all of it (one monotonic clock, same process).
 *
 *   flock /work/bench.lock node --import tsx bench/miss-floor.ts [rounds]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, createServer, request } from "node:http";
import { loadavg } from "node:os";
import { Log, LogLevel, Miniflare } from "miniflare";

const ORIGIN_LATENCY_MS = 20;
const WARM_UP_ROUNDS = 30;
const rounds = Number(process.argv[2] ?? 200);

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** When the origin received each path and when it answered. */
const seen = new Map<string, { at: number; answered: number }>();
const body = "x".repeat(512);
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

// `?tables=N` on a path makes its object create N tables; `?object=1` calls the object at all.
const script = `
import { DurableObject } from "cloudflare:workers";
export class Key extends DurableObject {
  async fill(tables) {
    for (let i = 0; i < tables; i++) {
      this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t" + i + " (key TEXT PRIMARY KEY, v INTEGER NOT NULL)");
      this.ctx.storage.sql.exec("INSERT INTO t" + i + " (key, v) VALUES (?, ?)", "k", 1);
    }
    return tables;
  }
}
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const cached = url.searchParams.has("cache");
    const cache = cached ? await caches.open("floor") : undefined;
    const key = "https://floor.internal" + url.pathname;
    if (cache && (await cache.match(key))) return new Response("hit");
    if (url.searchParams.has("object")) {
      await env.KEY.get(env.KEY.idFromName(url.pathname)).fill(Number(url.searchParams.get("tables") ?? 0));
    }
    const answer = await fetch(env.ORIGIN + url.pathname);
    if (!cache) return answer;
    const bytes = await answer.arrayBuffer();
    ctx.waitUntil(cache.put(key, new Response(bytes, { headers: { "cache-control": "max-age=60" } })));
    return new Response(bytes, answer);
  },
};`;
const storage = mkdtempSync("/dev/shm/herdless-floor-");
const mf = new Miniflare({
  workers: [
    {
      name: "floor",
      modules: true,
      script,
      compatibilityDate: "2026-04-20",
      bindings: { ORIGIN: originUrl },
      durableObjects: { KEY: { className: "Key", useSQLite: true } },
      unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
    },
  ],
  cf: false,
  log: new Log(LogLevel.WARN),
  durableObjectsPersist: `${storage}/do`,
  cachePersist: `${storage}/cache`,
});
await mf.ready;
const worker = (await mf.unsafeGetDirectURL("floor")).origin;

const VARIANTS = [
  { name: "direct", base: originUrl, query: "" },
  { name: "proxy", base: worker, query: "" },
  { name: "cache", base: worker, query: "?cache" },
  { name: "cache + new object", base: worker, query: "?cache&object" },
  { name: "cache + new object + 4 tables", base: worker, query: "?cache&object&tables=4" },
];

const agents = new Map(VARIANTS.map((v) => [v.name, new Agent({ keepAlive: true, maxSockets: 1 })]));

function miss(
  variant: (typeof VARIANTS)[number],
  path: string,
): Promise<{ total: number; before: number; after: number }> {
  return new Promise((resolve, reject) => {
    const sent = nowMs();
    const req = request(`${variant.base}${path}${variant.query}`, { agent: agents.get(variant.name) }, (res) => {
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
  VARIANTS.map((v) => [v.name, { total: [] as number[], before: [] as number[], after: [] as number[] }]),
);
const loadBefore = loadavg()[0] ?? 0;
for (let round = 0; round < WARM_UP_ROUNDS + rounds; round++) {
  // Each round in another order: no variant always follows the same one.
  const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
  for (const [i, variant] of order.entries()) {
    const measured = await miss(variant, `/r${round}/v${i}`);
    if (round < WARM_UP_ROUNDS) continue;
    const s = samples.get(variant.name)!;
    s.total.push(measured.total);
    s.before.push(measured.before);
    s.after.push(measured.after);
  }
}
const loadAfter = loadavg()[0] ?? 0;

const quantile = (values: number[], q: number): number =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))] ?? NaN;
const direct = quantile(samples.get("direct")!.total, 0.5);
console.log(
  `${rounds} misses per variant, origin ${ORIGIN_LATENCY_MS} ms, load average ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}\n`,
);
console.log("| variant | p50 ms | p99 ms | added p50 vs direct | before origin p50 | after origin p50 |");
console.log("|---|---|---|---|---|---|");
for (const variant of VARIANTS) {
  const s = samples.get(variant.name)!;
  const p50 = quantile(s.total, 0.5);
  console.log(
    `| ${variant.name} | ${p50.toFixed(2)} | ${quantile(s.total, 0.99).toFixed(2)} | ${(p50 - direct).toFixed(2)} | ${quantile(s.before, 0.5).toFixed(2)} | ${quantile(s.after, 0.5).toFixed(2)} |`,
  );
}
await mf.dispose();
origin.close();
rmSync(storage, { recursive: true, force: true });
