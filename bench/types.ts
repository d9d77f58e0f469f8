import type { FragileOriginStats } from "../fixtures/fragile-origin.ts";
import type { ProfileSummary } from "./cpu-profile.ts";
import type { LatencySummary } from "./histogram.ts";
import type { Startup } from "./startup.ts";
import type { MissTrace } from "./miss-trace.ts";

/** What the load generator does; passed to it as JSON on argv. */
export interface LoadSpec {
  /** base URLs ("http://127.0.0.1:PORT"); connection i talks to targets[i % targets.length] */
  targets: string[];
  /** Host header on every request, so every process/data center computes the same cache keys */
  host: string;
  connections: number;
  /** run each connection's loop until this long has passed … */
  durationMs?: number;
  /** … or send exactly this many requests per connection (spike) */
  requestsPerConnection?: number;
  /** cycle over these paths, or make every request a new query string on `uniquePrefix` */
  paths: string[];
  uniquePrefix?: string;
  /** a request taking longer counts as a network error */
  timeoutMs: number;
  /** wrk-like raw sockets (raw-load.ts) instead of Node's http client: for Content-Length answers only */
  raw?: boolean;
  /** sent with every request besides Host (a signed-in browser's cookie); not with `raw` */
  headers?: Record<string, string>;
  /** requests sent this long after the start are also tallied by Cache-Status class on their own (`settled`) */
  settleMs?: number;
}

export interface LoadResult {
  requests: number;
  /** 2xx and 3xx */
  ok: number;
  /** herdless's 503 + Retry-After (breaker open, queue full or timed out): load shed on purpose */
  shed: number;
  /** other 4xx/5xx plus network errors */
  errors: number;
  networkErrors: number;
  /** up to 5 distinct network error messages */
  networkErrorSamples: string[];
  byStatus: Record<string, number>;
  /** responses by the first Cache-Status parameter that tells the story: hit, stale, collapsed, fwd */
  byCacheStatus: Record<string, number>;
  /** with `settleMs`: requests sent after it, and their answers by Cache-Status class */
  settled?: { afterMs: number; requests: number; byCacheStatus: Record<string, number> };
  latency: LatencySummary;
  /** the same by Cache-Status class (the keys of byCacheStatus; absent in results from before it was measured) */
  latencyByCacheStatus?: Record<string, LatencySummary>;
  /** time to the first body byte of 2xx answers (absent in results from before it was measured) */
  ttfb?: LatencySummary;
  /** responses whose Cache-Status says `detail=breaker-open` (refused, or served stale because the breaker was open) */
  breakerOpen?: number;
  /** when the load began (epoch ms): `settleMs` and `durationMs` count from here (absent in older results) */
  startedAt?: number;
  elapsedMs: number;
  throughputRps: number;
  /** the load generator's own CPU (process.cpuUsage) */
  cpuMs: number;
  /** client requests and errors (non-ok, non-shed) per whole second */
  timeline: Array<{ atMs: number; requests: number; errors: number }>;
}

/** The origin's counters as the report shows them (see summarizeOrigin in origin.ts). */
export interface OriginSummary {
  requests: number;
  ok200: number;
  notModified304: number;
  /** everything else the origin answered or dropped: 503 (down/crashed), aborted, … */
  failed: number;
  peakInFlight: number;
  crashes: number;
  /** origin requests per whole second since its counters were reset */
  timeline: FragileOriginStats["timeline"];
  /** with the load's `settleMs`: the origin requests that arrived from then until the load's end (the window the answers' `settled` counts) */
  settled?: { afterMs: number; requests: number };
}

export type RuntimeName =
  "direct" | "node" | "fleet" | "worker" | "bare-node" | "bare-fleet" | "bare-worker" | "nginx" | "varnish";
export type ScenarioName =
  | "steady"
  | "spike"
  | "outage"
  | "hit-path"
  | "key-explosion"
  | "fleet-baseline"
  | "redis-killed"
  | "member-killed"
  | "tail-cold"
  | "tail-expiring"
  | "tail-expiring-swr"
  | "tail-hits"
  | "cold-misses"
  | "broken-url"
  | "dynamic-page"
  | "session-assets"
  | "large-body-herd"
  | "hot-keys"
  | "hot-keys-baseline";

/** What the Worker's meter counted (bench/worker-meter.js), summed over every data center's isolate. */
export interface MeterReading {
  /** client requests the Worker handled */
  clientRequests: number;
  /** wall ms the Worker's handler took until it returned a Response, summed over the requests */
  handlerMs: number;
  /**
   * operations by name: `fg` started while a client request was in progress in that isolate,
   * `bg` otherwise; `ms` the wall time until each settled, summed (async operations only)
   */
  counts: Record<string, { fg: number; bg: number; ms: number }>;
  /** wall ms during which an object of each class had a call or alarm running */
  activeMs: Record<string, number>;
  /** SQL statements (their first 72 characters): calls, rows read and written (absent in older results) */
  rowsBySql?: Record<string, { calls: number; read: number; written: number }>;
}

/** The event loops of a runtime's Node servers over a run, from bench/loop-delay.mjs's lines. */
export interface LoopSummary {
  /** the longest event-loop delay any server thread saw */
  maxMs: number;
  /** the worst per-second p99 of the delay */
  p99Ms: number;
  /** GC pauses: their sum over the run and every server, the longest one */
  gcMs: number;
  gcMaxMs: number;
  /** server-seconds whose longest delay passed 50 ms */
  secondsOver50Ms: number;
  /** per second of the run: the longest delay over every server thread */
  timeline: number[];
}

/** Ideal origin requests; `counts: "settled"` when they are those of the window after the load's `settleMs` (OriginSummary.settled). */
export interface Ideal {
  requests: number;
  formula: string;
  counts?: "settled";
}

/** One (scenario × runtime) measurement. */
export interface CellResult {
  scenario: ScenarioName;
  runtime: RuntimeName;
  /** set when the cell could not run (e.g. no redis-server), with the reason */
  skipped?: string;
  load?: LoadResult;
  origin?: OriginSummary;
  /** ideal origin requests and how it was computed */
  ideal?: Ideal;
  /** CPU of the server processes (whole process groups, from /proc) */
  serverCpuMs?: number;
  originCpuMs?: number;
  /** the machine's 1-minute load average before and after the run: high values mean other work shared the CPUs */
  loadAverage?: [number, number];
  /** outage only: origin requests while it was down, and how many the breaker allows */
  outage?: {
    downMs: number;
    /** when the origin went down, from the start of the run */
    startMs: number;
    originRequestsWhileDown: number;
    /** independent breakers in front of the origin (node 1, fleet 1 in Redis, worker 1 OriginGuardObject) */
    breakers: number;
    /** breakers × (max(failureThreshold, minFailingKeys, keys + 1) + ⌈(downMs − probeIntervalMs) ÷ probeIntervalMs⌉) */
    allowed: number;
    formula: string;
    clientErrors: number;
  };
  /** fault scenarios: what was done to the fleet, when (ms from the start of the run) */
  fault?: { kind: "redis-killed" | "member-killed"; atMs: number; downMs?: number };
  /** worker only: the operations the Worker made during the measured run */
  meter?: MeterReading;
  /** hit path: the alternated rounds against the bare server, in order */
  pairs?: HitPair[];
  /** scenario.repeats: which of the alternated runs this cell is (0 the first) */
  round?: number;
  /** hit path, node: where the serving thread's CPU went under the same load (cpu-profile.ts) */
  profile?: ProfileSummary;
  /**
   * spike: the same load on another key first, on the freshly started servers (its JIT still
   * cold); not in the table or the targets, which read the run after it
   */
  coldProcess?: { latency: LoadResult["latency"]; serverCpuMs: number; errors: number };
  /** spike, one-process runtimes: CPU ms of each thread of the server over the measured run, most first */
  threadCpuMs?: number[];
  /** Node servers: their event-loop delay and GC pauses during the measured run (bench/loop-delay.mjs) */
  loop?: LoopSummary;
  /** fleet only: the commands Redis ran during the measured run, by command (INFO commandstats) */
  redisCommands?: Record<string, number>;
  /** fleet only: times a member logged "redis unreachable" during the measured run */
  redisLost?: number;
  /** worker, scenarios with traceRequests: each request's hops and their times (bench/miss-trace.ts) */
  trace?: MissTrace;
  notes: string[];
}

export interface BenchRun {
  startedAt: string;
  quick: boolean;
  machine: { cpus: number; node: string; platform: string };
  originOptions: Record<string, unknown>;
  herdlessConfig: Record<string, unknown>;
  /** where the Worker's Durable Object storage lived (bench/worker-host.ts); absent before it was a choice (disk) */
  doStorage?: "memory" | "disk";
  cells: CellResult[];
  /** bundle size and start times (startup.ts), when measured */
  startup?: Startup;
}

/** One line of the report's verdicts: a target and whether this run met it. */
export interface Target {
  name: string;
  verdict: "PASS" | "MISS";
  detail: string;
}

/** One alternated round of the hit path: herdless, then its bare server (or the other way round). */
export interface HitPair {
  rps: number;
  bareRps: number;
  cpuUsPerRequest: number;
  bareCpuUsPerRequest: number;
  p99Ms: number;
  bareP99Ms: number;
}
