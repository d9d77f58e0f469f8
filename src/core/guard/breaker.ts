import type { BreakerState, OriginOutcome } from "./origin-guard.ts";

/** Persistable breaker state (Durable Object storage, Redis hash); versioned like entries. */
export interface BreakerRecord {
  v: 1;
  state: BreakerState;
  consecutiveFailures: number;
  /** While open: when the next probe may go out. */
  nextProbeAt: number;
  /** While half-open: when the probe's permission lapses (its holder may have died). */
  probeExpiresAt: number;
}

export interface BreakerSettings {
  failureThreshold: number;
  probeIntervalMs: number;
  /** How long a probe may run before another may be sent. */
  probeTimeoutMs: number;
}

export const closedBreaker = (): BreakerRecord => ({
  v: 1,
  state: "closed",
  consecutiveFailures: 0,
  nextProbeAt: 0,
  probeExpiresAt: 0,
});

/**
 * A circuit breaker as pure transitions over a record, so every runtime keeps the same
 * rules and only stores the record (in memory, in a Durable Object, in Redis).
 *
 * - closed: everything passes; `failureThreshold` consecutive failures open it;
 * - open: nothing passes until `nextProbeAt`, then exactly one caller becomes the probe
 *   (half-open);
 * - half-open: nothing passes but the probe; its success closes the breaker, its failure
 *   reopens it for another `probeIntervalMs`. A probe that never reports lapses after
 *   `probeTimeoutMs`, and the next caller probes.
 */
export function admit(
  record: BreakerRecord,
  settings: BreakerSettings,
  now: number,
): { admitted: boolean; probe: boolean; record: BreakerRecord; retryAfterMs: number } {
  if (record.state === "closed") return { admitted: true, probe: false, record, retryAfterMs: 0 };
  const probeDue = record.state === "open" ? now >= record.nextProbeAt : now >= record.probeExpiresAt;
  if (!probeDue) {
    const until = record.state === "open" ? record.nextProbeAt : record.probeExpiresAt;
    return { admitted: false, probe: false, record, retryAfterMs: Math.max(1_000, until - now) };
  }
  const next: BreakerRecord = { ...record, state: "half-open", probeExpiresAt: now + settings.probeTimeoutMs };
  return { admitted: true, probe: true, record: next, retryAfterMs: 0 };
}

/** Records how an admitted origin call ended. */
export function record(
  current: BreakerRecord,
  outcome: OriginOutcome,
  probe: boolean,
  settings: BreakerSettings,
  now: number,
): BreakerRecord {
  if (outcome === "neutral") return current;
  if (outcome === "success") {
    // A success closes the breaker only when it answers the probe, or when it is already closed.
    if (current.state === "closed" || probe) return closedBreaker();
    return current;
  }
  // Only the probe's own failure reopens a tripped breaker: a late failure of a call admitted
  // before it opened must not cancel the probe in flight (reopening would let a second probe
  // out at the next nextProbeAt while the first still runs). Once closed, a (lapsed) probe's
  // failure is an ordinary failure.
  if (probe && current.state !== "closed")
    return { ...current, state: "open", nextProbeAt: now + settings.probeIntervalMs, probeExpiresAt: 0 };
  const consecutiveFailures = current.consecutiveFailures + 1;
  if (current.state === "closed" && consecutiveFailures >= settings.failureThreshold) {
    return { v: 1, state: "open", consecutiveFailures, nextProbeAt: now + settings.probeIntervalMs, probeExpiresAt: 0 };
  }
  return { ...current, consecutiveFailures };
}
