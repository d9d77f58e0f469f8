import { systemClock, type Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import { Engine } from "../core/engine.ts";
import { KeyCoordinator } from "../core/fill/key-coordinator.ts";
import { LocalGuard } from "../core/guard/local-guard.ts";
import { MemoryLeaseManager } from "../core/fill/memory-lease.ts";
import { Metrics } from "../core/admin/metrics.ts";
import type { FetchLike } from "../core/origin/origin-client.ts";
import { failedCallLine, type OriginCallEvent } from "../core/origin/guarded-call.ts";
import type { ContentDecoding } from "../core/origin/response-fields.ts";
import type { OriginGuard } from "../core/guard/origin-guard.ts";
import { LocalPurgeRegistry, purgeKeyOf, type PurgeRegistry, type PurgeSnapshot } from "../core/admin/purge.ts";
import { LruStore } from "../core/store/lru-store.ts";
import type { Logger } from "./logger.ts";
import { WaitingRequests } from "../core/guard/waiting-requests.ts";
import { waitingLimit } from "./bounded-heap.ts";
import { nodeDecoding, nodeOriginFetch } from "./origin-fetch.ts";

export interface StackOptions {
  config: Config;
  logger: Logger;
  clock?: Clock;
  /** The origin call; {@link nodeOriginFetch} by default. */
  fetch?: FetchLike;
  /** Times requests for the latency histograms (milliseconds); `performance.now()` by default, tests pass a ManualClock. */
  latencyTimer?: Clock;
  /** Which Content-Encodings `fetch` decodes; with the default fetch, none; with another, undici's rule unless given. */
  decodes?: ContentDecoding;
}

/**
 * The origin call of a stack and the decoding that goes with it: {@link nodeOriginFetch}
 * (node:http) for every `origin.hostHeader`, so the origin receives exactly the headers
 * herdless forwards (the global `fetch` adds `Sec-Fetch-Mode`, and `User-Agent: node`,
 * `Accept` and `Accept-Language` when absent, and forces Host from the URL) and the body
 * with the Content-Encoding the origin chose (the global `fetch` decodes gzip, deflate and
 * br). Its parser is strict: an origin answer with a malformed head (a field name that is not
 * a token, a control character in a value) fails whole, a 502 naming the cause; no lenient
 * parsing of a head on a kept-alive connection, where two parsers disagreeing is a desync.
 * A caller's own `fetch` (tests, embedding) comes with its own `decodes`, undici's rule by default.
 *
 * @example
 * const { fetch, decodes } = originCall({}); // nodeOriginFetch, nodeDecoding
 */
export function originCall(options: Pick<StackOptions, "fetch" | "decodes">): {
  fetch: FetchLike;
  decodes?: ContentDecoding;
} {
  if (options.fetch !== undefined)
    return { fetch: options.fetch, ...(options.decodes ? { decodes: options.decodes } : {}) };
  return { fetch: nodeOriginFetch, decodes: options.decodes ?? nodeDecoding };
}

/**
 * Hears every origin call: counted for the metrics, and a failed one (no answer, or a 5xx)
 * logged at warn, as nginx's error log names each upstream that failed. The lines are as
 * many as the calls the guard let through: in an outage the breaker and each key's backoff
 * keep them to a few per probe interval, not one per client request.
 *
 * @example
 * new KeyCoordinator({ ...options, onOriginCall: originCallListener(metrics, logger) });
 */
export function originCallListener(metrics: Metrics, logger: Logger): (event: OriginCallEvent) => void {
  return (event) => {
    metrics.originCall(event.outcome);
    const line = failedCallLine(event);
    if (line) logger.warn(line.msg, line.fields);
  };
}

/**
 * The requests this process may hold waiting for an origin answer (bounded-heap.ts waitingLimit).
 *
 * @example
 * new Engine({ ...parts, waiting: waitingRequests(config) });
 */
export function waitingRequests(config: Config): WaitingRequests {
  return new WaitingRequests(waitingLimit(config));
}

/** Everything one Node process runs: the engine and the parts the server reports on. */
export interface Stack {
  config: Config;
  clock: Clock;
  engine: Engine;
  near: LruStore;
  guard: OriginGuard;
  metrics: Metrics;
  /**
   * Purges in force; read synchronously on every hit. Undefined when the copy in hand is past
   * its propagation bound: the hit path then leaves the request to the engine, which waits for a read.
   */
  purges: PurgeRegistry & { copy(): PurgeSnapshot | undefined };
  startedAt: number;
  /** "local" for one process, "redis" for a healthy fleet member, "degraded" when Redis is gone. */
  mode(): "local" | "redis" | "degraded";
  close(): Promise<void>;
}

/**
 * One process on its own: the LRU is both the near tier and the coordinator's store, the
 * lease and the guard are in-process.
 */
export function localStack(options: StackOptions): Stack {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const { fetch, decodes } = originCall(options);
  const metrics = new Metrics(clock, options.latencyTimer);
  const near = new LruStore({ maxBytes: config.cache.maxBytes, clock });
  const guard = new LocalGuard({ config, clock });
  const background = (work: Promise<unknown>) =>
    void work.catch((error: unknown) => logger.warn("background work failed", { error: String(error) }));
  const onOriginCall = originCallListener(metrics, logger);
  const coordinator = new KeyCoordinator({
    config,
    clock,
    store: near,
    leases: new MemoryLeaseManager(clock),
    guard,
    fetch,
    ...(decodes ? { decodes } : {}),
    background,
    onOriginCall,
  });
  const purges = new LocalPurgeRegistry(clock, purgeKeyOf(config, true));
  const engine = new Engine({
    config,
    clock,
    near,
    nearIsStore: true,
    coordinator,
    guard,
    fetch,
    ...(decodes ? { decodes } : {}),
    background,
    metrics,
    onOriginCall,
    purges: () => purges.current(),
    waiting: waitingRequests(config),
  });
  return {
    config,
    clock,
    engine,
    near,
    guard,
    metrics,
    purges,
    startedAt: clock.now(),
    mode: () => "local",
    close: async () => undefined,
  };
}
