/** User-facing misses go first; background revalidations yield to them. */
export type Priority = "foreground" | "background";

/**
 * What an origin call says about the origin's health, as the circuit breaker counts it:
 * `success` the origin answered, `failure` a sign of sickness (see guarded-call.ts),
 * `neutral` nothing either way (the request was never sent, or our side cancelled it).
 */
export type OriginOutcome = "success" | "failure" | "neutral";

/** A slot to call the origin. Release it exactly once, with the outcome. */
export interface OriginPermit {
  /** `key` names what was fetched: the breaker counts how many distinct keys fail. */
  release(outcome: OriginOutcome, key?: string): void | Promise<void>;
  /**
   * For a permit that is a lease its holder renews (the Worker's guard object): aborts once
   * the holder can no longer vouch that the lease still holds (renewal refused, or the guard
   * unreachable for most of a lease). The origin call, streamed body included, must stop
   * then, or the slot could be given to another while this call still runs. Absent for
   * permits that hold until released.
   */
  readonly lost?: AbortSignal;
  /**
   * True when no slot was free when asked for and the caller queued for this one (a fleet's
   * guard; after Redis lost its data every caller does for a while). Whatever gave the caller
   * its right to call (a key's lease) may have gone meanwhile: it checks before calling
   * (fill/held-flight.ts). Absent: granted at once.
   */
  readonly waited?: boolean;
}

export type BreakerState = "closed" | "open" | "half-open";

export interface GuardSnapshot {
  breaker: BreakerState;
  /** When the breaker last closed after being open (a probe succeeded), if it has. */
  recoveredAt?: number;
  inFlight: number;
  queued: number;
}

/**
 * The origin guard: a deployment-wide cap on concurrent origin requests with a bounded
 * queue, and a circuit breaker. Every origin call goes through it.
 *
 * `acquire` resolves with a permit, or rejects with a HerdlessError:
 * - QUEUE_FULL: `origin.maxQueue` callers are already waiting;
 * - QUEUE_TIMEOUT: no slot within `origin.queueTimeoutMs`;
 * - ORIGIN_BUSY: no slot free at once for an `ifFree` call;
 * - BREAKER_OPEN: the breaker is open and this caller is not the probe.
 * Each carries `retryAfterMs`.
 */
export interface OriginGuard {
  /**
   * `ifFree`: the call may not queue. Without a slot free at once (and nobody queued ahead of
   * it) it is refused with ORIGIN_BUSY. For a revalidation whose requester holds a copy
   * stale-if-error allows: that copy answers at once rather than after the queue's wait.
   */
  acquire(priority: Priority, signal?: AbortSignal, ifFree?: boolean): Promise<OriginPermit>;
  snapshot(): Promise<GuardSnapshot>;
}
