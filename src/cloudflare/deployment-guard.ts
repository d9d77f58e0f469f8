import type { Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import { GuardFront } from "../core/guard/guard-front.ts";
import type { OriginGuard } from "../core/guard/origin-guard.ts";
import { DurableObjectGuard } from "./do-guard.ts";
import type { OriginGuardObject } from "./origin-guard-object.ts";

/**
 * The deployment-wide guard: the one guard object, so the cap and the breaker hold across
 * data centers. With `background`, permits are handed back behind the caller (see
 * DurableObjectGuardOptions.background). Every call to the object passes `front` first (one
 * per isolate: see {@link GuardFront}), so the object's load follows the origin's, not the
 * traffic's.
 *
 * When the object cannot be reached (COORDINATOR_UNAVAILABLE), no origin call is made: the
 * caller serves its stale copy if it may, else 503 with Retry-After. A local guard of the
 * full cap in each caller would multiply the cap by the number of callers (each key's
 * object is one; 100 keys were 100 × the cap), and no share of the cap per caller can sum
 * to at most the cap: nobody knows how many callers are cut off, nor how many permits the
 * object still holds for calls in flight. The origin's load cap is the promise; serving
 * cold misses through an outage of the one object that keeps it is not.
 */
export function deploymentGuard(
  namespace: DurableObjectNamespace<OriginGuardObject>,
  config: Config,
  front: GuardFront,
  name?: string,
  background?: (work: Promise<unknown>) => void,
): OriginGuard {
  // The guard object answers within queueTimeoutMs; past that it is not coming back.
  const remote = new DurableObjectGuard(namespace, name, {
    waitTimeoutMs: config.origin.queueTimeoutMs + 5_000,
    ...(background ? { background } : {}),
    ...(config.coordinator.locationHint ? { locationHint: config.coordinator.locationHint } : {}),
  });
  return {
    acquire: (priority, signal, ifFree) => front.acquire(() => remote.acquire(priority, signal, ifFree)),
    // Unreachable, the object refuses every origin call from here, as an open breaker does;
    // what it counts in flight cannot be known from here.
    snapshot: () => remote.snapshot().catch(() => ({ breaker: "open" as const, inFlight: 0, queued: 0 })),
  };
}

/** The one {@link GuardFront} of an isolate for the guard object `name`, as seen with `clock`. */
export function guardFrontFor(clock: Clock, config: Config, name = "global"): GuardFront {
  let byName = frontsByClock.get(clock);
  if (!byName) frontsByClock.set(clock, (byName = new Map()));
  let front = byName.get(name);
  if (!front) byName.set(name, (front = newGuardFront(clock, config)));
  return front;
}

export function newGuardFront(clock: Clock, config: Config): GuardFront {
  return new GuardFront({
    clock,
    maxWaiting: config.origin.maxConcurrency + config.origin.maxQueue,
    probeIntervalMs: config.breaker.probeIntervalMs,
  });
}

/**
 * Keyed by clock so that a test's own clock gets fronts of its own; in production there is
 * one clock, so one front per guard name for every coordinator object in the isolate.
 */
const frontsByClock = new WeakMap<Clock, Map<string, GuardFront>>();
