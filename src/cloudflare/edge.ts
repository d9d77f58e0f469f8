import { statsSnapshot } from "../core/admin/admin.ts";
import type { StatsReporter } from "../core/admin/stats-reporter.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { Engine } from "../core/engine.ts";
import type { Coordinator } from "../core/fill/coordinator.ts";
import { KeyCoordinator } from "../core/fill/key-coordinator.ts";
import type { OriginGuard } from "../core/guard/origin-guard.ts";
import { canonicalUrl } from "../core/http/canonical-url.ts";
import { headRefusal, hostRefusal } from "../core/http/request-check.ts";
import { TieredStore } from "../core/store/tiered-store.ts";
import type { EngineResponse } from "../core/http/respond.ts";
import type { UrlTarget } from "../core/http/fresh-hit.ts";
import { adminResponse } from "./admin-route.ts";
import { isAdminPath } from "../core/admin/admin-path.ts";
import { CacheApiStore } from "./cache-api-store.ts";
import { workerdDecoding } from "./content-decoding.ts";
import { coordinatorClient, countingOriginCalls } from "./coordinator-client.ts";
import { toEngineRequest, toResponse } from "./convert.ts";
import { deploymentGuard } from "./deployment-guard.ts";
import type { Env } from "./env.ts";
import { DEGRADED_FOR_MS, isolateState, type ReadyIsolate } from "./isolate.ts";
import { prometheusText } from "../core/admin/prometheus.ts";
import { workerCounters } from "./stats.ts";
import { log, logFailedOriginCall } from "./log.ts";
import type { OriginCallEvent } from "../core/origin/guarded-call.ts";
import { forwardedAs, mayJoinFromMemory, memoryHit } from "./memory-hit.ts";
import type { Landed } from "./isolate-flights.ts";
import { OncePerFlightPuts } from "./once-per-flight-puts.ts";
import { originFetch } from "./interim-fetch.ts";
import { nextTurn } from "./next-turn.ts";
import { personalCookies } from "../core/http/cookies.ts";
import { opensTunnel } from "../core/origin/tunnel.ts";
import { webSocketTunnel } from "./web-socket-tunnel.ts";

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
  /** Names the deployment's stats object (default "global"); tests give each test its own. */
  statsObject?: string;
}

/**
 * One request through the edge: the data center's Cache API is the near tier, the key's
 * {@link KeyCoordinatorObject} the coordinator, and a per-isolate single-flight over the Cache
 * API the fallback while the coordinator cannot be reached. Background revalidations run
 * under `ctx.waitUntil`. Invalid config answers 500 with the message naming the field. A
 * WebSocket handshake (core `opensTunnel`) is never answered from memory: it is tunnelled.
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
  const isolate = isolateState(env, clock, options.isolate ?? "", options.cacheName, options.statsObject);
  if (isolate.kind === "invalid") {
    return new Response(`herdless: ${isolate.message}\n`, {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  }
  const { config, purges } = isolate;
  // Headers joins repeated Host fields with ", ", which no valid Host contains: both are refused.
  const host = request.headers.get("host");
  const refused = hostRefusal(host === null ? [] : [host]) ?? headRefusal(request.url, request.headers);
  if (refused) return toResponse(refused);
  const cacheName = options.cacheName ?? config.cache.name;
  const target = isolate.targets.get(request.url, () => canonicalUrl(new URL(request.url)));
  const url = target.url;
  const admin = isAdminPath(url.pathname);
  const background = (work: Promise<unknown>) =>
    ctx.waitUntil(work.catch((error: unknown) => log("warn", "background work failed", error)));
  const tunnel = !admin && opensTunnel(config, request.method, url.pathname, request.headers);
  const hit = admin || tunnel ? undefined : memoryHit(isolate, request, target, cacheName, background);
  const waited =
    hit || admin || tunnel || !mayJoinFromMemory(request, target)
      ? undefined
      : await afterIsolateWait(isolate, request, target, cacheName, background);
  const answered = hit ?? waited?.answered;
  if (answered) {
    reportLater(isolate.reporter, ctx);
    return answered;
  }
  const guard = deploymentGuard(env.GUARD, config, isolate.guardFront, undefined, background);
  if (admin) {
    return adminResponse(request, url, {
      token: env.HERDLESS_ADMIN_TOKEN || config.admin.token,
      purges,
      attempts: isolate.attempts,
      now: () => clock.now(),
      // Served counts and origin calls are the deployment's, summed by the stats object from
      // every isolate's reports (this isolate's only without it); the breaker, the origin
      // requests in flight and the queue come from the one guard object.
      stats: async () => {
        const [{ counters, scope }, guarded] = await Promise.all([workerCounters(isolate), guard.snapshot()]);
        const now = clock.now();
        const mode =
          isolate.degradedAt !== undefined && now - isolate.degradedAt < DEGRADED_FOR_MS
            ? "degraded"
            : "durable-objects";
        return statsSnapshot(counters, guarded, {
          runtime: "cloudflare",
          mode,
          startedAt: isolate.startedAt,
          now,
          scope,
        });
      },
      metrics: async () => {
        const [{ counters, isolates }, guarded] = await Promise.all([workerCounters(isolate), guard.snapshot()]);
        return prometheusText({
          scope: isolates === undefined ? "isolate" : "deployment",
          counters,
          guard: guarded,
          inFlightHelp: "Origin requests in flight across the deployment (the guard object's count).",
          ...(isolates === undefined ? {} : { reportingIsolates: isolates }),
        });
      },
    });
  }
  const engine = edgeEngine(isolate, env, cacheName, clock, guard, background, waited?.landed);
  if (tunnel) return webSocketTunnel(engine, request, isolate);
  const answer = await engineAnswer(engine, request, waited?.looks);
  reportLater(isolate.reporter, ctx);
  return toResponse(answer);
}

/**
 * A plain read memory could not answer at once, answered from memory after a wait its
 * isolate runs anyway, with nothing built for it; otherwise the flight it waited on, for its
 * engine. Under a spike, the requests then queue no work ahead of that wait on the isolate's
 * one thread.
 * - The isolate's purge copy lapsed (no traffic for a bound: the first wave of a spike): the
 *   request waits for the isolate's one read of the list, which its engine would wait for
 *   too. Only for a key memory holds: a miss reads the Cache API beside the list.
 * - A key another request of the isolate is looking up (in no tier of memory, not yet in
 *   flight: the first wave on a cold key): the request waits for that lookup, then for the
 *   call it made. `looks`: none runs, and this request's engine is the one that looks (its
 *   mark, to end once answered).
 * - A key this isolate is fetching (cold, or expired without stale-while-revalidate): the
 *   request waits for that answer, and most are answered from memory once it landed.
 * None of them for a key whose last answer could not be shared: there is nothing to wait for.
 */
async function afterIsolateWait(
  isolate: ReadyIsolate,
  request: Request,
  target: UrlTarget,
  cacheName: string,
  background: (work: Promise<unknown>) => void,
): Promise<{ answered: Response | undefined; landed?: Landed | undefined; looks?: () => void }> {
  const { primary } = target;
  // A key whose last answer could not be shared: its misses do not wait on one another (core fill/pass-marks.ts).
  if (isolate.passMarksFor(cacheName).marked(primary, isolate.clock.now())) return { answered: undefined };
  const memory = isolate.memoryFor(cacheName);
  const flights = isolate.flightsFor(cacheName);
  if (!isolate.purges.fresh() && memory.getSync(primary)) {
    await isolate.purges.current(background);
    const hit = memoryHit(isolate, request, target, cacheName, background);
    if (hit) return { answered: hit };
  }
  const fwd = forwardedAs(memory.getSync(primary));
  const lookup = fwd === "uri-miss" ? flights.lookup(primary, NEAR_READ_JOIN_MS) : undefined;
  if (lookup) {
    await lookup;
    // What the other request found in the near tier, now in memory: answered as its engine answered it.
    const hit = memoryHit(isolate, request, target, cacheName, background);
    if (hit) return { answered: hit };
  }
  const landing = flights.landing(primary);
  if (!landing) {
    // Marked at once: the requests that arrive before this one's engine reads anything wait on
    // it; never by one with a session's cookie, whose engine may relay it and end nothing soon.
    const leads =
      fwd === "uri-miss" && !personalCookies(request.headers.get("cookie"), isolate.config.cache.ignoreCookies);
    return { answered: undefined, ...(leads ? { looks: flights.lookingUp(primary, NEAR_READ_JOIN_MS) } : {}) };
  }
  const landed = await landing;
  const fromMemory = () => landed && memoryHit(isolate, request, target, cacheName, background, { ...landed, fwd });
  // workerd wakes a waiter only after the leader's own continuation has kept the entry in
  // memory (a promise resolved across requests is delivered later), so the answer is there at
  // once; where the waiter runs first (one request context, as in tests), it is by a timer.
  const answered =
    fromMemory() ?? (landed?.shared?.result.kind === "entry" ? await nextTurn().then(fromMemory) : undefined);
  return { answered, landed };
}

/**
 * The engine's answer. `looked`: this request looks the key up for its isolate (afterIsolateWait),
 * ended when it is answered (or when its call for the key starts).
 */
async function engineAnswer(
  engine: Engine,
  request: Request,
  looked: (() => void) | undefined,
): Promise<EngineResponse> {
  try {
    return await engine.handle(toEngineRequest(request));
  } finally {
    looked?.();
  }
}

/** A Cache API read takes milliseconds; a request waits this long on another's before reading itself. */
const NEAR_READ_JOIN_MS = 1_000;

/** The engine of one request: the isolate's memory and the data center's Cache API, the key's object, the fallback. */
function edgeEngine(
  isolate: ReadyIsolate,
  env: Env,
  cacheName: string,
  clock: Clock,
  guard: OriginGuard,
  background: (work: Promise<unknown>) => void,
  landed: Landed | undefined,
): Engine {
  const { config, metrics, purges } = isolate;
  const flights = isolate.flightsFor(cacheName);
  // This isolate's memory in front of the data center's Cache API: a hit costs no cache.match,
  // and the Cache API is written after the response (memory holds the entry at once).
  const near = new OncePerFlightPuts(
    new TieredStore(isolate.memoryFor(cacheName), async () => new CacheApiStore(await caches.open(cacheName), clock), {
      writeBehind: (write) => background(nextTurn().then(write)),
      writes: isolate.nearWritesFor(cacheName),
      // A cold key under a spike: one cache.match per isolate, not one per request.
      sharedReads: { running: isolate.nearReadsFor(cacheName), joinTimeoutMs: NEAR_READ_JOIN_MS },
      // …and none once this isolate asks the key's object for it: the answer comes from there.
      fetching: (key) => flights.has(key),
      onBackError: (error) => log("warn", "Cache API read failed: answered through the key's coordinator", error),
    }),
    cacheName,
  );
  // A per-request filler sharing the isolate's leases: callers in this isolate coalesce
  // through the lease and the cache, and no promise crosses request contexts. Built only
  // when the coordinator failed: a spike's requests do not each pay for one.
  let filler: KeyCoordinator | undefined;
  const onOriginCall = (event: OriginCallEvent) => {
    metrics.originCall(event.outcome);
    logFailedOriginCall(event);
  };
  const fallback: Coordinator = {
    fill: (request) =>
      (filler ??= new KeyCoordinator({
        config,
        clock,
        store: near,
        leases: isolate.leases,
        guard,
        fetch: originFetch,
        decodes: workerdDecoding,
        background,
        onOriginCall,
      })).fill(request),
  };
  return new Engine({
    config,
    clock,
    near,
    // One call to the key's object per isolate at a time; the others of this isolate wait on it.
    coordinator: countingOriginCalls(
      flights.coordinator(coordinatorClient(env.COORDINATOR, config), background, landed),
      metrics,
    ),
    fallback,
    guard,
    fetch: originFetch,
    decodes: workerdDecoding,
    background,
    metrics,
    onOriginCall,
    nearCopies: isolate.nearCopiesFor(cacheName),
    // The isolate's copy: no round trip while it is younger than admin.purgePropagationMs,
    // then one read for the isolate, whose Cache API write goes behind the answer.
    purges: () => purges.current(background),
    refreshMarks: isolate.refreshMarksFor(cacheName),
    passMarks: isolate.passMarksFor(cacheName),
    refusals: isolate.refusalsFor(cacheName),
    onDegraded: (error) => {
      isolate.degradedAt = clock.now();
      log("warn", "coordinator unavailable: local single-flight in this isolate", error);
    },
  });
}

/** Schedules this isolate's next stats report, if one is due, off the request's way (in the next turn). */
function reportLater(reporter: StatsReporter | undefined, ctx: ExecutionContext): void {
  const report = reporter?.afterRequest((send) => nextTurn().then(send));
  if (report) ctx.waitUntil(report);
}
