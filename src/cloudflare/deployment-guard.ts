import type { Config } from "../core/config.ts";
import { isHerdlessError } from "../core/errors.ts";
import type { OriginGuard } from "../core/guard/origin-guard.ts";
import { DurableObjectGuard } from "./do-guard.ts";
import type { OriginGuardObject } from "./origin-guard-object.ts";

/**
 * The deployment-wide guard (the one guard object, so the cap and the breaker hold across
 * data centers), and `local` (this isolate's or object's own) while that object cannot be
 * reached: the origin keeps a cap and a breaker even then. With `background`, permits are
 * handed back behind the caller (see DurableObjectGuardOptions.background).
 */
export function deploymentGuard(
  namespace: DurableObjectNamespace<OriginGuardObject>,
  config: Config,
  local: OriginGuard,
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
        return await remote.acquire(priority, signal);
      } catch (error) {
        if (!isHerdlessError(error, "COORDINATOR_UNAVAILABLE")) throw error;
        return local.acquire(priority, signal);
      }
    },
    snapshot: () => remote.snapshot().catch(() => local.snapshot()),
  };
}
