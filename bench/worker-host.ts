/**
 * The Worker runtime of the bench: one workerd (through Miniflare) running the bundled
 * herdless Worker as N simulated data centers, plus N bare Workers, the baseline (always
 * there; see bareWorker). Each data center is its own Worker with its own Cache API cache
 * (`cache.name` in its HERDLESS_CONFIG) and its own isolate memory tier; all of them bind
 * COORDINATOR, GUARD and PURGES to the Durable Object classes of the first, so they share
 * one coordinator namespace, one origin guard and one purge registry, as data centers share
 * Durable Objects in production. Each Worker listens on its own socket.
 *
 *   node --import tsx bench/worker-host.ts '<WorkerHostSpec as JSON>'
 *
 * Prints `workers listening {"dataCenters":[…],"bare":[…],"floor":[…]}` once every socket answers.
 */
import { createWriteStream, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Log, LogLevel, Miniflare, type WorkerOptions } from "miniflare";
import type { Sample } from "./bare-node.ts";

export interface WorkerHostSpec {
  bundlePath: string;
  originUrl: string;
  /** herdless config without origin.url and cache.name */
  config: Record<string, unknown>;
  dataCenters: number;
  sample?: Sample;
  compatibilityDate: string;
  /** wrangler.jsonc's compatibility flags, for herdless's Worker (the bare Workers need none) */
  compatibilityFlags?: string[];
  /**
   * Where Miniflare keeps Durable Object and Cache API storage: a directory on tmpfs made by
   * worker-runtime.ts (`--do-storage memory`, the default), or undefined for Miniflare's own
   * temporary directory on disk (`--do-storage disk`). See {@link DoStorage}.
   */
  storageDir?: string;
  /** false: the bundle alone, without the meter (bench/miss-ab.ts, to see what the meter costs). Default true. */
  meter?: boolean;
  /** true: also N fetch-once Workers (floorWorker), for bench/tail-floor.ts. Default false. */
  floor?: boolean;
  /** the floor Workers fetch again once their answer is this old (ms); default never (a cold key's floor) */
  floorTtlMs?: number;
  /**
   * true: every Worker stamps each answer with `x-bench-trace: dc=…;t0=…;t1=…` (when the
   * handler ran, workerd's clock; herdless's data centers through the meter, with the binding
   * BENCH_TRACE); the load generator's request log keeps it (`BENCH_REQUEST_LOG`). Default
   * false: every answer is then built exactly as before.
   */
  trace?: boolean;
}

/**
 * `memory`: the objects' SQLite files and the Cache API's entries on tmpfs (/dev/shm), so a
 * commit costs no fsync of the machine's disk; `disk`: Miniflare's default temporary
 * directory. workerd offers no in-memory SQLite storage (Miniflare's
 * unsafeEphemeralDurableObjects turns the SQL API off), and on a shared disk each new
 * object's file costs tens of ms to create and each commit an fsync (measured: 37 ms to
 * call a new object, 19 ms for a write and its answer, against 6 and 2 ms on tmpfs), a cost
 * of this machine's disk, not of Cloudflare's storage. The output gate still holds every
 * answer until its commit is done.
 */
export type DoStorage = "memory" | "disk";

const METER = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "worker-meter.js"), "utf8");

function dataCenterWorker(spec: WorkerHostSpec, index: number): WorkerOptions {
  const owner = "dc0";
  const cache = (spec.config.cache as Record<string, unknown> | undefined) ?? {};
  const config = { ...spec.config, cache: { ...cache, name: `bench-dc${index}` } };
  const objects = (className: string) =>
    index === 0 ? { className, useSQLite: true } : { className, scriptName: owner, useSQLite: true };
  return {
    name: `dc${index}`,
    // The bundle under the bench's meter (worker-meter.js): the same Worker, its operations counted.
    modules: [
      ...(spec.meter === false
        ? []
        : [{ type: "ESModule" as const, path: join(dirname(spec.bundlePath), "meter.js"), contents: METER }]),
      { type: "ESModule", path: spec.bundlePath, contents: readFileSync(spec.bundlePath, "utf8") },
    ],
    compatibilityDate: spec.compatibilityDate,
    // The meter's timeline follows each request's async context (AsyncLocalStorage); herdless uses no Node API.
    compatibilityFlags: ["nodejs_als", ...(spec.compatibilityFlags ?? [])],
    bindings: {
      ORIGIN_URL: spec.originUrl,
      HERDLESS_CONFIG: JSON.stringify(config),
      ...(spec.trace === true ? { BENCH_TRACE: `dc${index}` } : {}),
    },
    // The bindings of wrangler.jsonc; every data center uses dc0's classes (one namespace each).
    durableObjects: {
      COORDINATOR: objects("KeyCoordinatorObject"),
      GUARD: objects("OriginGuardObject"),
      PURGES: objects("PurgeRegistryObject"),
      STATS: objects("StatsObject"),
    },
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
}

/**
 * A Worker that answers every request with the sample's bytes, built once at module scope.
 * `PUT /__bench/sample` with another sample (as JSON) replaces them: the hit-path pairs
 * capture herdless's answer after workerd started, and the bare Worker must be in the same
 * workerd.
 *
 * There are as many bare Workers as data centers, each its own isolate on its own socket,
 * so that a baseline loaded like herdless (the same connections spread over N isolates)
 * pays what herdless's topology pays: N isolates to start and warm, and workerd switching
 * between them. The hit-path pairs load one data center against bare0 alone.
 */
function bareWorker(spec: WorkerHostSpec, sample: Sample | undefined, index: number): WorkerOptions {
  const script = `
let body, status, headers;
function use(sample) {
  body = Uint8Array.from(atob(sample.bodyBase64), (c) => c.charCodeAt(0));
  status = sample.status;
  headers = sample.headers;
}
use(${JSON.stringify(sample ?? { status: 200, headers: [], bodyBase64: "" })});
export default {
  async fetch(request) {
    if (request.method === "PUT") {
      use(await request.json());
      return new Response(null, { status: 204 });
    }
    ${
      spec.trace === true
        ? `const traced = new Headers(headers);
    const t = Date.now();
    traced.set("x-bench-trace", "dc=bare${index};t0=" + t + ";t1=" + t);
    return new Response(body, { status, headers: traced });`
        : "return new Response(body, { status, headers });"
    }
  },
};
`;
  return {
    name: `bare${index}`,
    modules: true,
    script,
    compatibilityDate: spec.compatibilityDate,
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
}

/**
 * The simplest cold-key cache a Worker can be, the floor under herdless's `tail-cold` wave
 * (bench/tail-floor.ts): the first request of an isolate for a URL fetches it from the origin
 * once, the requests that come meanwhile await that same promise (as herdless's waiters await
 * their isolate's flight), and every answer is the buffered bytes. No Cache API, no Durable
 * Object, no purge list, no config: what any Worker pays for a cold key under the burst in
 * this workerd (the origin's answer read once the burst's requests are in, the waiters woken
 * across requests, their answers all at once), and nothing of herdless's.
 *
 * With `floorTtlMs` the answer is fetched again once it is that old, the requests meanwhile
 * awaiting the new fetch (no stale answer): the floor under `tail-expiring`, an origin that
 * sends max-age=2 under the same load.
 */
function floorWorker(spec: WorkerHostSpec, index: number): WorkerOptions {
  const script = `
const flights = new Map();
const TTL_MS = ${spec.floorTtlMs ?? "Infinity"};
export default {
  async fetch(request, env) {
    const t0 = Date.now();
    const url = new URL(request.url);
    const key = url.pathname + url.search;
    let flight = flights.get(key);
    if (flight === undefined || (flight.at !== undefined && Date.now() - flight.at >= TTL_MS)) {
      const next = { at: undefined, answer: undefined };
      next.answer = fetch(env.ORIGIN_URL + key, { headers: { host: request.headers.get("host") ?? "" } }).then(
        async (res) => {
          const answer = { status: res.status, headers: [...res.headers], body: new Uint8Array(await res.arrayBuffer()) };
          next.at = Date.now();
          return answer;
        },
      );
      flights.set(key, (flight = next));
    }
    const answer = await flight.answer;
    ${
      spec.trace === true
        ? `const traced = new Headers(answer.headers);
    traced.set("x-bench-trace", "dc=floor${index};t0=" + t0 + ";t1=" + Date.now());
    return new Response(answer.body, { status: answer.status, headers: traced });`
        : "return new Response(answer.body, { status: answer.status, headers: answer.headers });"
    }
  },
};
`;
  return {
    name: `floor${index}`,
    modules: true,
    script,
    compatibilityDate: spec.compatibilityDate,
    bindings: { ORIGIN_URL: spec.originUrl },
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
}

const arg = process.argv[2];
if (arg !== undefined && process.argv[1]?.endsWith("worker-host.ts")) {
  const spec = JSON.parse(arg) as WorkerHostSpec;
  const workers = Array.from({ length: spec.dataCenters }, (_, i) => dataCenterWorker(spec, i));
  for (let i = 0; i < spec.dataCenters; i++) workers.push(bareWorker(spec, spec.sample, i));
  if (spec.floor === true) for (let i = 0; i < spec.dataCenters; i++) workers.push(floorWorker(spec, i));
  const persist = spec.storageDir;
  // BENCH_WORKERD_LOG: workerd's stdout and stderr (the Workers' console lines) appended to this file.
  const workerdLog = process.env.BENCH_WORKERD_LOG || undefined;
  const mf = new Miniflare({
    workers,
    cf: false,
    log: new Log(LogLevel.WARN),
    ...(workerdLog !== undefined
      ? {
          handleRuntimeStdio: (out: NodeJS.ReadableStream, err: NodeJS.ReadableStream) => {
            const file = createWriteStream(workerdLog, { flags: "a" });
            out.pipe(file);
            err.pipe(file);
          },
        }
      : {}),
    ...(persist === undefined
      ? {}
      : { durableObjectsPersist: join(persist, "do"), cachePersist: join(persist, "cache") }),
  });
  await mf.ready;
  const dataCenters = await Promise.all(
    workers.filter((w) => w.name?.startsWith("dc")).map(async (w) => (await mf.unsafeGetDirectURL(w.name)).origin),
  );
  const bare = await Promise.all(
    workers.filter((w) => w.name?.startsWith("bare")).map(async (w) => (await mf.unsafeGetDirectURL(w.name)).origin),
  );
  const floor = await Promise.all(
    workers.filter((w) => w.name?.startsWith("floor")).map(async (w) => (await mf.unsafeGetDirectURL(w.name)).origin),
  );
  process.stdout.write(`workers listening ${JSON.stringify({ dataCenters, bare, floor })}\n`);
  const stop = (): void => {
    void mf.dispose().finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
