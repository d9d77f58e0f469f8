import type { Coordinator } from "../core/fill/coordinator.ts";
import { HerdlessError } from "../core/errors.ts";

/**
 * A fleet process's local single-flight (the fill it falls back to when Redis is away) that
 * starts nothing once the process is closing. Its server drains its clients before the
 * process lets go of Redis, so only work left running for a client that had gone is still
 * under way then: such a request, waiting on another process's fill of its key, lost its
 * wait with the closed Redis connection and fell back to a fill of its own, a second origin
 * request for a page the fleet was filling (or had just filled), for nobody. Seen by the
 * fleet's seeded check (`/slow/144` asked twice, 5 ms apart, as its run closed the fleet).
 *
 * @example
 * const fallback = untilClosed(new KeyCoordinator({ ... }));
 * close: async () => { fallback.close(); ... }
 */
export function untilClosed(local: Coordinator): Coordinator & { close(): void } {
  let closed = false;
  return {
    fill: (request) =>
      closed
        ? Promise.reject(new HerdlessError("COORDINATOR_UNAVAILABLE", "this process is shutting down"))
        : local.fill(request),
    ...(local.invalidate ? { invalidate: local.invalidate.bind(local) } : {}),
    close: () => void (closed = true),
  };
}
