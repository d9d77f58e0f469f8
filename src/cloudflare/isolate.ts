import type { Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import { forwardPolicy, type ForwardPolicy } from "../core/origin/forward.ts";
import type { Entry } from "../core/http/entry.ts";
import { MemoryLeaseManager } from "../core/fill/memory-lease.ts";
import { RefreshMarks } from "../core/fill/refresh-marks.ts";
import { PassMarks } from "../core/fill/pass-marks.ts";
import { RefusalMarks } from "../core/fill/refusal-marks.ts";
import type { GuardFront } from "../core/guard/guard-front.ts";
import { newGuardFront } from "./deployment-guard.ts";
import { UrlTargets } from "../core/http/fresh-hit.ts";
import { TunnelSlots } from "../core/origin/tunnel.ts";
import { AttemptLimiter } from "../core/admin/auth.ts";
import { Metrics } from "../core/admin/metrics.ts";
import { StatsReporter } from "../core/admin/stats-reporter.ts";
import { LruStore } from "../core/store/lru-store.ts";
import { configFromEnv, configSignature } from "./config-env.ts";
import type { Env } from "./env.ts";
import { IsolateFlights } from "./isolate-flights.ts";
import { sharedBodyLimits } from "../core/fill/laggards.ts";
import { log } from "./log.ts";
import { DurableObjectPurgeRegistry } from "./purge-registry-object.ts";
import { STATS_OBJECT } from "./stats-object.ts";

/** The stats report `mode: "degraded"` this long after the coordinator was last unreachable. */
export const DEGRADED_FOR_MS = 30_000;

export interface ReadyIsolate {
  kind: "ready";
  signature: string;
  clock: Clock;
  config: Config;
  /** The config's origin request policy (forward.ts), read by the memory hit path's variant lookups. */
  forward: ForwardPolicy;
  leases: MemoryLeaseManager;
  /**
   * Keys this isolate is refreshing in the background into the cache `cacheName`: one
   * refresh each, not one per request (one cache per isolate in a deployment; tests
   * simulate several data centers in one isolate).
   */
  refreshMarksFor(cacheName: string): RefreshMarks;
  /** Keys whose answers could not be shared, whose misses skip the collapse (core fill/pass-marks.ts). */
  passMarksFor(cacheName: string): PassMarks;
  /**
   * Keys the key's object refused a moment ago (breaker open, backing off): their stale
   * copies answer without a call until the refusal's retry time (core fill/refusal-marks.ts).
   */
  refusalsFor(cacheName: string): RefusalMarks;
  /** Coordinator calls in flight from this isolate for the cache `cacheName`, collapsed per key. */
  flightsFor(cacheName: string): IsolateFlights;
  /** What this isolate's calls to the deployment's guard object pass first. */
  guardFront: GuardFront;
  /** This isolate's copy of the deployment's purge list. */
  purges: DurableObjectPurgeRegistry;
  metrics: Metrics;
  /** Sends this isolate's counters to the deployment's stats object; absent without the STATS binding. */
  reporter: StatsReporter | undefined;
  /** Wrong admin tokens per client address, in this isolate. */
  attempts: AttemptLimiter;
  startedAt: number;
  /** The isolate's in-memory tier, one per cache name (a simulated data center in tests). */
  memoryFor(cacheName: string): LruStore;
  /** Cache API reads in flight per cache name, shared by this isolate's requests (see TieredStoreOptions.sharedReads). */
  nearReadsFor(cacheName: string): Map<string, Promise<Entry | undefined>>;
  /** Cache API writes behind answers in flight per cache name, one after another per key (see TieredStoreOptions.writes). */
  nearWritesFor(cacheName: string): Map<string, Promise<unknown>>;
  /** Streamed bodies being copied into each cache name's near tier (see EngineOptions.nearCopies). */
  nearCopiesFor(cacheName: string): Set<string>;
  /** Request URLs parsed once, with route and key, so a hit parses nothing. */
  targets: UrlTargets;
  /** The WebSocket tunnels this isolate holds open, against origin.maxWebSockets. */
  tunnels: TunnelSlots;
  /** When the coordinator was last unreachable from this isolate. */
  degradedAt?: number;
}

export type IsolateState = ReadyIsolate | { kind: "invalid"; signature: string; clock: Clock; message: string };

/** An isolate has 128 MB in all: its memory tier keeps the hottest entries within this. */
const ISOLATE_MEMORY_BYTES = 16 * 1024 * 1024;

/** Per isolate (one entry in a deployment; tests simulate several isolates by name). */
const isolates = new Map<string, IsolateState>();

/**
 * Config is parsed once per isolate, keyed by the variables it comes from; the fallback's
 * leases, the guard front, the purge copy, the metrics and their reporter live as long.
 */
export function isolateState(
  env: Env,
  clock: Clock,
  name: string,
  cacheName?: string,
  statsObject = STATS_OBJECT,
): IsolateState {
  const signature = signatureOf(env);
  const known = isolates.get(name);
  if (known?.signature === signature && known.clock === clock) return known;
  let state: IsolateState;
  try {
    const config = configFromEnv(env);
    const purges = new DurableObjectPurgeRegistry(
      env.PURGES,
      config.admin.purgePropagationMs,
      () => clock.now(),
      (error) => log("warn", "purge registry unavailable: serving with the last purge list this isolate read", error),
      // The data center's copy: the registry object is read about once per data center per bound.
      () => caches.open(cacheName ?? config.cache.name),
    );
    const metrics = new Metrics(clock);
    const reporter = statsReporter(env, statsObject, metrics, clock, config.admin.statsReportIntervalMs);
    state = {
      kind: "ready",
      signature,
      clock,
      config,
      forward: forwardPolicy(config),
      leases: new MemoryLeaseManager(clock),
      refreshMarksFor: perCache(() => new RefreshMarks(config.coordinator.waitTimeoutMs)),
      passMarksFor: perCache(() => new PassMarks(config.coordinator.uncacheableMemoryMs, config.origin.maxConcurrency)),
      refusalsFor: perCache(() => new RefusalMarks(config.breaker.probeIntervalMs, config.coordinator.waitTimeoutMs)),
      flightsFor: perCache(
        () => new IsolateFlights(config.coordinator.waitTimeoutMs, sharedBodyLimits(config), config),
      ),
      nearReadsFor: perCache(() => new Map<string, Promise<Entry | undefined>>()),
      nearWritesFor: perCache(() => new Map<string, Promise<unknown>>()),
      guardFront: newGuardFront(clock, config),
      purges,
      metrics,
      reporter,
      attempts: new AttemptLimiter(),
      startedAt: clock.now(),
      memoryFor: perCache(
        () => new LruStore({ maxBytes: Math.min(config.cache.maxBytes, ISOLATE_MEMORY_BYTES), clock }),
      ),
      nearCopiesFor: perCache(() => new Set<string>()),
      targets: new UrlTargets(config),
      tunnels: new TunnelSlots(() => config.origin.maxWebSockets),
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log("error", "invalid config", error);
    state = { kind: "invalid", signature, clock, message };
  }
  isolates.set(name, state);
  return state;
}

/**
 * What the isolate's config comes from, per env object: workerd hands every request the same
 * one, so a request compares one string with itself instead of building the config's text.
 */
const signatures = new WeakMap<Env, string>();

function signatureOf(env: Env): string {
  let signature = signatures.get(env);
  if (signature === undefined) signatures.set(env, (signature = configSignature(env)));
  return signature;
}

/** One `T` per cache name (a simulated data center in tests; one in a deployment), made on first use. */
function perCache<T>(make: () => T): (cacheName: string) => T {
  const made = new Map<string, T>();
  return (cacheName) => {
    let found = made.get(cacheName);
    if (found === undefined) made.set(cacheName, (found = make()));
    return found;
  };
}

/** Reports this isolate's counters to the deployment's stats object, when the Worker has one. */
function statsReporter(
  env: Env,
  statsObject: string,
  metrics: Metrics,
  clock: Clock,
  intervalMs: number,
): StatsReporter | undefined {
  const namespace = env.STATS;
  if (!namespace) return undefined;
  return new StatsReporter({
    metrics,
    clock,
    intervalMs,
    send: (report) => namespace.get(namespace.idFromName(statsObject)).report(report),
    onError: (error) =>
      log(
        "warn",
        "stats report failed: the deployment's totals miss this isolate's latest counts until the next one",
        error,
      ),
  });
}
