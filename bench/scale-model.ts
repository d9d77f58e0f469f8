/**
 * The scale model of a herdless deployment on Cloudflare: requests per second on each
 * Durable Object class and on its busiest single object, Cache API operations and origin
 * requests, as functions of the deployment's shape. docs/scale.md explains each term; the
 * simulation test (test/cloudflare/scale-simulation.test.ts) checks the counts it predicts.
 *
 * `npx tsx bench/scale-table.ts` prints the table of docs/scale.md.
 */

/** The shape of a deployment and its traffic, steady state. */
export interface Deployment {
  name: string;
  /** Data centers that receive traffic for the site. */
  dataCenters: number;
  /** Isolates serving the Worker in each of those data centers. */
  isolatesPerDataCenter: number;
  /** Client requests per second, all data centers together. */
  requestsPerSecond: number;
  /** Distinct cached URLs requested at least once per freshness lifetime. */
  keys: number;
  /** How many of those keys are requested in every data center (the rest in one). */
  hotKeys: number;
  /** Freshness lifetime of a page, seconds. */
  ttlSeconds: number;
  /** Purges per second. */
  purgesPerSecond: number;
  /** admin.purgePropagationMs. */
  purgePropagationMs: number;
  /** Never-seen URLs per second (crawlers, cache busters): each is a cold miss. */
  newUrlsPerSecond: number;
  /** origin.maxConcurrency and the origin's latency: what it can answer per second. */
  originMaxConcurrency: number;
  originLatencyMs: number;
  /** admin.statsReportIntervalMs (default 10,000). */
  statsReportIntervalMs?: number;
  /** Dashboards open at once (each polls the stats once a second; default 1). */
  openDashboards?: number;
  /**
   * Isolates that ask the guard object (those hosting key objects, and edges relaying):
   * each has one GuardFront. Default: every isolate of the deployment, the most there can be.
   */
  guardCallerIsolates?: number;
}

export interface Load {
  origin: number;
  coordinatorObjects: number;
  /** The busiest single KeyCoordinatorObject: a hot key's, asked by every data center. */
  busiestCoordinator: number;
  guardObject: number;
  purgeRegistryObject: number;
  /** The one StatsObject: each isolate's reports, plus the dashboards' polls; never on a request's way. */
  statsObject: number;
  cacheApiReads: number;
  cacheApiWrites: number;
}

/**
 * Before this issue: every isolate read the purge list from its object, and every refused
 * origin attempt reached the guard object. Now: one purge read per data center per bound,
 * and each isolate's GuardFront answers a standing refusal itself.
 */
export type Design = "before" | "now";

/**
 * A full queue is believed for this long by a GuardFront (QUEUE_FULL_MEMORY_MS of
 * core/guard/guard-front.ts): at most one scout per caller isolate per period asks again.
 */
const GUARD_FRONT_RETRY_MS = 250;

/** The one guard object answers at most what the origin can take, plus refusals. */
function originRate(d: Deployment): number {
  const refreshes = d.keys / d.ttlSeconds;
  const capacity = (d.originMaxConcurrency * 1_000) / d.originLatencyMs;
  return Math.min(refreshes + d.newUrlsPerSecond, capacity);
}

/**
 * Requests per second on each object class.
 * - origin: one request per key per lifetime (promise 1), plus cold misses, at most what
 *   the cap lets through;
 * - coordinators: a data center whose copy expired asks the key's object once (its
 *   isolates coalesce through the isolate memory and the data center's Cache API), so a
 *   hot key costs one call per data center per lifetime, a cold one one call;
 * - guard: an acquire and a release per origin request (a permit renewal every third of a
 *   lease only for calls longer than that: streamed bodies; not counted), plus the refused
 *   attempts that reach the object: each one before; now at most one scout per caller
 *   isolate per GuardFront period, since the front answers a standing refusal in the
 *   isolate (and keeps at most maxConcurrency + maxQueue of its calls waiting on the object);
 * - purge registry: one read per reader per propagation bound, where a reader is an
 *   isolate (before) or a data center (now), plus each purge;
 * - stats: each isolate reports at most once per interval, in the background (ctx.waitUntil),
 *   so at most isolates ÷ interval, plus one call per dashboard poll (one a second);
 * - Cache API: every request that misses the isolate memory reads it (estimated as the
 *   share of traffic on keys not hot in the isolate), each refresh writes it once per
 *   data center, and the purge list is read and written once per data center per bound.
 */
export function load(d: Deployment, design: Design = "now"): Load {
  const origin = originRate(d);
  const refused = Math.max(0, d.keys / d.ttlSeconds + d.newUrlsPerSecond - origin);
  const callers = d.guardCallerIsolates ?? d.dataCenters * d.isolatesPerDataCenter;
  const refusedAtGuard = design === "before" ? refused : Math.min(refused, (callers * 1_000) / GUARD_FRONT_RETRY_MS);
  const hotRefreshes = (d.hotKeys / d.ttlSeconds) * d.dataCenters;
  const coldRefreshes = (d.keys - d.hotKeys) / d.ttlSeconds;
  const coordinatorObjects = hotRefreshes + coldRefreshes + d.newUrlsPerSecond;
  const periodsPerSecond = 1_000 / d.purgePropagationMs;
  const readers = design === "before" ? d.dataCenters * d.isolatesPerDataCenter : d.dataCenters;
  const purgeRegistryObject = readers * periodsPerSecond + d.purgesPerSecond;
  const purgeCacheReads = design === "before" ? 0 : d.dataCenters * d.isolatesPerDataCenter * periodsPerSecond;
  const purgeCacheWrites = design === "before" ? 0 : d.dataCenters * periodsPerSecond;
  const memoryMissShare = Math.min(1, (d.keys - d.hotKeys) / Math.max(1, d.keys));
  return {
    origin,
    coordinatorObjects,
    busiestCoordinator: d.hotKeys > 0 ? d.dataCenters / d.ttlSeconds : 1 / d.ttlSeconds,
    guardObject: 2 * origin + refusedAtGuard,
    purgeRegistryObject,
    statsObject:
      (d.dataCenters * d.isolatesPerDataCenter * 1_000) / (d.statsReportIntervalMs ?? 10_000) + (d.openDashboards ?? 1),
    cacheApiReads: d.requestsPerSecond * memoryMissShare + purgeCacheReads,
    cacheApiWrites: hotRefreshes + coldRefreshes + d.newUrlsPerSecond + purgeCacheWrites,
  };
}

/** The three deployments of docs/scale.md. */
export const DEPLOYMENTS: Deployment[] = [
  {
    name: "small blog",
    dataCenters: 40,
    isolatesPerDataCenter: 1,
    requestsPerSecond: 20,
    keys: 300,
    hotKeys: 5,
    ttlSeconds: 300,
    purgesPerSecond: 0.001,
    purgePropagationMs: 1_000,
    newUrlsPerSecond: 0.2,
    originMaxConcurrency: 4,
    originLatencyMs: 200,
  },
  {
    name: "news site, hot front page",
    dataCenters: 250,
    isolatesPerDataCenter: 4,
    requestsPerSecond: 20_000,
    keys: 3_000,
    hotKeys: 50,
    ttlSeconds: 30,
    purgesPerSecond: 0.1,
    purgePropagationMs: 1_000,
    newUrlsPerSecond: 5,
    originMaxConcurrency: 16,
    originLatencyMs: 100,
  },
  {
    name: "shop, 100k URLs",
    dataCenters: 150,
    isolatesPerDataCenter: 3,
    requestsPerSecond: 3_000,
    keys: 100_000,
    hotKeys: 200,
    ttlSeconds: 600,
    purgesPerSecond: 0.5,
    purgePropagationMs: 1_000,
    newUrlsPerSecond: 20,
    originMaxConcurrency: 8,
    originLatencyMs: 150,
  },
];

/** Published platform limits the model is held against (sources in docs/scale.md). */
export const LIMITS = {
  /** A single Durable Object is single-threaded: about 1,000 requests per second. */
  objectRequestsPerSecond: 1_000,
};

/** The busiest single Durable Object of a deployment: its name and requests per second. */
export function busiestObject(l: Load): { name: string; requestsPerSecond: number } {
  const objects: [string, number][] = [
    ["guard", l.guardObject],
    ["purge registry", l.purgeRegistryObject],
    ["stats", l.statsObject],
    ["hot key's coordinator", l.busiestCoordinator],
  ];
  const [name, requestsPerSecond] = objects.reduce((a, b) => (b[1] > a[1] ? b : a));
  return { name, requestsPerSecond };
}

function row(cells: (string | number)[]): string {
  return `| ${cells.map((c) => (typeof c === "number" ? format(c) : c)).join(" | ")} |`;
}

function format(n: number): string {
  if (n >= 100) return Math.round(n).toLocaleString("en-US");
  if (n >= 1) return n.toFixed(1);
  return n.toFixed(3);
}

/** The Markdown table of docs/scale.md. */
export function table(deployments: Deployment[] = DEPLOYMENTS): string {
  const lines = [
    row([
      "deployment",
      "origin req/s",
      "coordinators req/s (busiest one)",
      "guard req/s: before → now",
      "purge registry req/s: before → now",
      "stats req/s",
      "Cache API reads / writes per s",
      "busiest single object: before → now",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---", "---"]),
  ];
  for (const d of deployments) {
    const before = load(d, "before");
    const now = load(d);
    const [was, is] = [busiestObject(before), busiestObject(now)];
    lines.push(
      row([
        d.name,
        now.origin,
        `${format(now.coordinatorObjects)} (${format(now.busiestCoordinator)})`,
        `${format(before.guardObject)} → ${format(now.guardObject)}`,
        `${format(before.purgeRegistryObject)} → ${format(now.purgeRegistryObject)}`,
        now.statsObject,
        `${format(now.cacheApiReads)} / ${format(now.cacheApiWrites)}`,
        `${was.name} ${format(was.requestsPerSecond)} → ${is.name} ${format(is.requestsPerSecond)}`,
      ]),
    );
  }
  return lines.join("\n");
}
