import { statsSnapshot } from "../core/admin/admin.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import type { Coordinator, FillResult } from "../core/fill/coordinator.ts";
import { Engine } from "../core/engine.ts";
import { HerdlessError, isHerdlessError } from "../core/errors.ts";
import { freshHit, UrlTargets, type UrlTarget } from "../core/http/fresh-hit.ts";
import { KeyCoordinator } from "../core/fill/key-coordinator.ts";
import { LocalGuard } from "../core/guard/local-guard.ts";
import { LruStore } from "../core/store/lru-store.ts";
import { MemoryLeaseManager } from "../core/fill/memory-lease.ts";
import { Metrics, type OriginOutcomeKind } from "../core/admin/metrics.ts";
import type { FetchLike } from "../core/origin/origin-client.ts";
import type { OriginGuard } from "../core/guard/origin-guard.ts";
import { hitHeaders } from "../core/http/respond.ts";
import { TieredStore } from "../core/store/tiered-store.ts";
import { adminResponse, isAdminPath } from "./admin-route.ts";
import { CacheApiStore } from "./cache-api-store.ts";
import { toEngineRequest, toResponse } from "./convert.ts";
import { DurableObjectGuard } from "./do-guard.ts";
import { configFromEnv, type Env } from "./env.ts";
import type { KeyCoordinatorObject } from "./key-coordinator-object.ts";
import type { OriginGuardObject } from "./origin-guard-object.ts";
import { OncePerFlightPuts } from "./once-per-flight-puts.ts";
import { DurableObjectPurgeRegistry } from "./purge-registry-object.ts";

export interface EdgeOptions {
  /** The data center's cache (`caches.open(name)`); defaults to `cache.name` of the config. Tests name one per simulated data center. */
  cacheName?: string;
  /** Defaults to the system clock; tests pass a ManualClock. */
  clock?: Clock;
  /**
   * Names the per-isolate state to use (purge copy, metrics, fallback leases and guard).
   * A deployment leaves it unset; tests give each simulated data center its own.
   */
  isolate?: string;
}

/**
 * One request through the edge: the data center's Cache API is the near tier, the key's
 * {@link KeyCoordinatorObject} the coordinator, and a per-isolate single-flight over the Cache
 * API the fallback while the coordinator cannot be reached. Background revalidations run
 * under `ctx.waitUntil`. Invalid config answers 500 with the message naming the field.
 *
 * @example
 * export default { fetch: (request, env, ctx) => handle(request, env, ctx) } satisfies ExportedHandler<Env>;
 */
export async function handle(
  request: Request,
  env: Env,
  ctx: ExecutionContext,
  options: EdgeOptions = {},
): Promise<Response> {
  const clock = options.clock ?? systemClock;
  const isolate = isolateState(env, clock, options.isolate ?? "");
  if (isolate.kind === "invalid") {
    return new Response(`herdless: ${isolate.message}\n`, {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  }
  const { config, metrics, purges } = isolate;
  const cacheName = options.cacheName ?? config.cache.name;
  const target = isolate.targets.get(request.url, () => new URL(request.url));
  const url = target.url;
  const admin = isAdminPath(url.pathname);
  const hit = admin ? undefined : memoryHit(isolate, request, target, cacheName);
  if (hit) return hit;
  const guard = deploymentGuard(env.GUARD, config, isolate.guard);
  if (admin) {
    return adminResponse(request, url, {
      token: env.HERDLESS_ADMIN_TOKEN || config.admin.token,
      purges,
      // Served counts and origin calls are this isolate's (Workers keep no shared counters);
      // the breaker, the origin requests in flight and the queue come from the one guard
      // object, so they are deployment-wide.
      stats: async () => {
        const now = clock.now();
        const mode =
          isolate.degradedAt !== undefined && now - isolate.degradedAt < DEGRADED_FOR_MS
            ? "degraded"
            : "durable-objects";
        return statsSnapshot(metrics, await guard.snapshot(), {
          runtime: "cloudflare",
          mode,
          startedAt: isolate.startedAt,
          now,
        });
      },
    });
  }
  // This isolate's memory in front of the data center's Cache API: a hit costs no cache.match.
  const near = new OncePerFlightPuts(
    new TieredStore(isolate.memoryFor(cacheName), async () => new CacheApiStore(await caches.open(cacheName), clock)),
    cacheName,
  );
  const fetch: FetchLike = (url, init) => globalThis.fetch(url, init);
  const background = (work: Promise<unknown>) =>
    ctx.waitUntil(work.catch((error: unknown) => log("warn", "background work failed", error)));
  // A per-request filler sharing the isolate's leases: callers in this isolate coalesce
  // through the lease and the cache, and no promise crosses request contexts.
  const fallback = new KeyCoordinator({
    config,
    clock,
    store: near,
    leases: isolate.leases,
    guard,
    fetch,
    background,
    onOriginCall: (event) => metrics.originCall(event.outcome),
  });
  const engine = new Engine({
    config,
    clock,
    near,
    coordinator: countingOriginCalls(coordinatorClient(env.COORDINATOR, config), metrics),
    fallback,
    guard,
    fetch,
    background,
    metrics,
    // The isolate's copy: no round trip while it is younger than admin.purgePropagationMs.
    purges: () => purges.current(),
    onDegraded: (error) => {
      isolate.degradedAt = clock.now();
      log("warn", "coordinator unavailable: local single-flight in this isolate", error);
    },
  });
  return toResponse(await engine.handle(toEngineRequest(request)));
}

/**
 * A fresh hit in the isolate's memory, answered with no engine, store or RPC built for the
 * request: the same decision as the engine's (core/fresh-hit.ts) and the same bytes
 * (`fromEntry`). Anything else, or a purge list past its bound, goes the full way.
 */
function memoryHit(
  isolate: ReadyIsolate,
  request: Request,
  target: UrlTarget,
  cacheName: string,
): Response | undefined {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  const purges = isolate.purges.fresh();
  if (!purges) return undefined;
  const { route, primary } = target;
  const headers = request.headers;
  const facts = {
    method: request.method,
    hasAuthorization: headers.has("authorization"),
    hasCookie: headers.has("cookie"),
  };
  const now = isolate.clock.now();
  const entry = freshHit(isolate.memoryFor(cacheName), route, primary, facts, headers, purges, now);
  if (!entry) return undefined;
  isolate.metrics.count(entry.negative ? "negative" : "hit", primary);
  return new Response(request.method === "HEAD" ? null : entry.body, {
    status: entry.status,
    headers: hitHeaders(entry, now),
  });
}

/**
 * The deployment-wide guard (the one guard object, so the cap and the breaker hold across
 * data centers), and `local` (this isolate's or object's own) while that object cannot be
 * reached: the origin keeps a cap and a breaker even then.
 */
export function deploymentGuard(
  namespace: DurableObjectNamespace<OriginGuardObject>,
  config: Config,
  local: OriginGuard,
  name?: string,
): OriginGuard {
  // The guard object answers within queueTimeoutMs; past that it is not coming back.
  const remote = new DurableObjectGuard(namespace, name, { waitTimeoutMs: config.origin.queueTimeoutMs + 5_000 });
  return {
    async acquire(priority, signal) {
      try {
        return await remote.acquire(priority, signal);
      } catch (error) {
        if (!isHerdlessError(error, "COORDINATOR_UNAVAILABLE")) throw error;
        return local.acquire(priority, signal);
      }
    },
    snapshot: () => remote.snapshot().catch(() => local.snapshot()),
  };
}

/**
 * The coordinator as the engine sees it: the key's Durable Object over typed RPC.
 *
 * The edge stops waiting after `coordinator.waitTimeoutMs` and falls back. The object's
 * own call is not cancelled: it is the key's shared flight, bounded inside the object by
 * the lease and the origin timeout, and finishing it stores the entry for every caller.
 */
export function coordinatorClient(
  namespace: DurableObjectNamespace<KeyCoordinatorObject>,
  config: Config,
): Coordinator {
  const waitMs = config.coordinator.waitTimeoutMs;
  return {
    async fill(request) {
      // RPC typing widens tuples ([string, string]) to arrays; the cloned values are the same.
      const call = namespace
        .get(namespace.idFromName(request.primary))
        .fill(request) as Promise<unknown> as Promise<FillResult>;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new HerdlessError(
                "COORDINATOR_UNAVAILABLE",
                `coordinator of ${request.primary} did not answer within ${waitMs} ms`,
              ),
            ),
          waitMs,
        );
      });
      try {
        return await Promise.race([call, deadline]);
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    },
  };
}

/**
 * Counts the origin calls a coordinator reports to this edge: the flight it led
 * (`fwdStatus` set, not collapsed) or an origin failure. A refresh a coordinator starts on
 * its own (behind a stale answer to an edge without a copy) is not seen here.
 */
function countingOriginCalls(inner: Coordinator, metrics: Metrics): Coordinator {
  return {
    async fill(request) {
      const result = await inner.fill(request);
      const outcome = originOutcome(result);
      if (outcome) metrics.originCall(outcome);
      return result;
    },
  };
}

function originOutcome(result: FillResult): OriginOutcomeKind | undefined {
  if (result.kind === "alone") return undefined;
  if (result.kind !== "pass" && result.collapsed) return undefined;
  const status = result.fwdStatus;
  if (status === undefined) return result.kind === "failed" && ORIGIN_FAILURES.has(result.code) ? "error" : undefined;
  return status === 200 ? "200" : status === 304 ? "304" : status >= 500 ? "5xx" : "other";
}

const ORIGIN_FAILURES = new Set<string>(["ORIGIN_TIMEOUT", "ORIGIN_NETWORK", "ORIGIN_TRUNCATED"]);

/** The stats report `mode: "degraded"` this long after the coordinator was last unreachable. */
const DEGRADED_FOR_MS = 30_000;

interface ReadyIsolate {
  kind: "ready";
  signature: string;
  clock: Clock;
  config: Config;
  leases: MemoryLeaseManager;
  guard: LocalGuard;
  /** This isolate's copy of the deployment's purge list. */
  purges: DurableObjectPurgeRegistry;
  metrics: Metrics;
  startedAt: number;
  /** The isolate's in-memory tier, one per cache name (a simulated data center in tests). */
  memoryFor(cacheName: string): LruStore;
  /** Request URLs parsed once, with route and key, so a hit parses nothing. */
  targets: UrlTargets;
  /** When the coordinator was last unreachable from this isolate. */
  degradedAt?: number;
}

type IsolateState = ReadyIsolate | { kind: "invalid"; signature: string; clock: Clock; message: string };

/** An isolate has 128 MB in all: its memory tier keeps the hottest entries within this. */
const ISOLATE_MEMORY_BYTES = 16 * 1024 * 1024;

/** Per isolate (one entry in a deployment; tests simulate several isolates by name). */
const isolates = new Map<string, IsolateState>();

/**
 * Config is parsed once per isolate, keyed by the variables it comes from; the fallback's
 * leases and guard, the purge copy and the metrics live as long.
 */
function isolateState(env: Env, clock: Clock, name: string): IsolateState {
  const signature = `${env.ORIGIN_URL}\n${env.HERDLESS_CONFIG ?? ""}`;
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
    );
    const memory = new Map<string, LruStore>();
    const memoryFor = (cacheName: string) => {
      let store = memory.get(cacheName);
      if (!store)
        memory.set(
          cacheName,
          (store = new LruStore({ maxBytes: Math.min(config.cache.maxBytes, ISOLATE_MEMORY_BYTES), clock })),
        );
      return store;
    };
    state = {
      kind: "ready",
      signature,
      clock,
      config,
      leases: new MemoryLeaseManager(clock),
      guard: new LocalGuard({ config, clock }),
      purges,
      metrics: new Metrics(clock),
      startedAt: clock.now(),
      memoryFor,
      targets: new UrlTargets(config),
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log("error", "invalid config", error);
    state = { kind: "invalid", signature, clock, message };
  }
  isolates.set(name, state);
  return state;
}

function log(level: "warn" | "error", msg: string, error: unknown): void {
  const line = JSON.stringify({ level, msg, error: error instanceof Error ? error.message : String(error) });
  if (level === "error") console.error(line);
  else console.warn(line);
}
