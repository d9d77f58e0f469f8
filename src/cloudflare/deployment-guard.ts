import type { Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import { isHerdlessError } from "../core/errors.ts";
import { GuardFront } from "../core/guard/guard-front.ts";
import type { OriginGuard } from "../core/guard/origin-guard.ts";
import { DurableObjectGuard } from "./do-guard.ts";
import type { OriginGuardObject } from "./origin-guard-object.ts";

/**
 * The deployment-wide guard (the one guard object, so the cap and the breaker hold across
 * data centers), and `local` (this isolate's or object's own) while that object cannot be
 * reached: the origin keeps a cap and a breaker even then. With `background`, permits are
 * handed back behind the caller (see DurableObjectGuardOptions.background). Every call to
 * the object passes `front` first (one per isolate: see {@link GuardFront}), so the object's
 * load follows the origin's, not the traffic's.
 */
export function deploymentGuard(
  namespace: DurableObjectNamespace<OriginGuardObject>,
  config: Config,
  local: OriginGuard,
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
    async acquire(priority, signal) {
      try {
        return await front.acquire(() => remote.acquire(priority, signal));
      } catch (error) {
        if (!isHerdlessError(error, "COORDINATOR_UNAVAILABLE")) throw error;
        return local.acquire(priority, signal);
      }
    },
    snapshot: () => remote.snapshot().catch(() => local.snapshot()),
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
