import { admit, closedBreaker, record, type BreakerRecord, type BreakerSettings } from "./breaker.ts";
import type { Clock } from "../clock.ts";
import { longestOriginTimeoutMs, type Config } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import type { GuardSnapshot, OriginGuard, OriginOutcome, OriginPermit, Priority } from "./origin-guard.ts";

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The runtime's own timers. */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

interface Waiter {
  grant: () => void;
  fail: (error: unknown) => void;
  timer: unknown;
  /** Detaches the abort listener once the waiter is settled. */
  detach: () => void;
}

export interface LocalGuardOptions {
  config: Config;
  clock: Clock;
  timers?: Timers;
  /** The breaker to start from, e.g. as persisted before a restart. Default: closed. */
  breaker?: BreakerRecord;
  /** Hears every change of the breaker record, to persist it. */
  onBreakerChange?: (record: BreakerRecord) => void;
  /**
   * This guard's cap, read at every admission. Default `origin.maxConcurrency`; a fleet
   * member cut off from Redis passes its share of it.
   */
  maxConcurrency?: () => number;
}

/**
 * One caller's time in origin queues, carried across every queue it joins (a fleet member's
 * shared queue, its local fallback, the shared queue again): its deadline is set when it first
 * queues, so a caller waits at most `origin.queueTimeoutMs` in queues in all, not that long in each.
 */
export interface QueueBudget {
  deadline?: number;
}

/** How long a caller may still queue from `now` (starting its budget's deadline if unset). */
export function queueWaitMs(budget: QueueBudget | undefined, now: number, queueTimeoutMs: number): number {
  if (!budget) return queueTimeoutMs;
  budget.deadline ??= now + queueTimeoutMs;
  return Math.max(0, budget.deadline - now);
}

/** A permit of {@link LocalGuard}: whether it is the breaker's probe, and a way to give it up uncounted. */
export interface LocalPermit extends OriginPermit {
  readonly probe: boolean;
  /**
   * Frees the slot without counting an outcome (its holder died or never called the origin).
   * An abandoned probe leaves the breaker half-open until the probe lapses, as if its holder died.
   */
  abandon(): void;
}

/**
 * The origin guard of one process: a semaphore of `origin.maxConcurrency` slots with a
 * bounded queue (foreground first; background revalidations only take a slot when no
 * foreground miss waits) and the circuit breaker of breaker.ts. Used on its own by a
 * single Node process, inside the guard Durable Object, and as the local fallback.
 *
 * @example
 * const guard = new LocalGuard({ config, clock: systemClock });
 * const permit = await guard.acquire("foreground"); try { ... } finally { permit.release("success"); }
 */
export class LocalGuard implements OriginGuard {
  private inFlight = 0;
  private readonly foreground: Waiter[] = [];
  private readonly background: Waiter[] = [];
  private breaker: BreakerRecord;
  private readonly timers: Timers;
  private readonly settings: BreakerSettings;
  /** Permit ids are `${instance}:${n}`: unique across restarts, so a probe is never mistaken for another. */
  private readonly instance = Math.random().toString(36).slice(2, 10);
  private permits = 0;

  constructor(private readonly o: LocalGuardOptions) {
    this.timers = o.timers ?? realTimers;
    this.breaker = o.breaker ?? closedBreaker();
    this.settings = breakerSettings(o.config);
  }

  /** `budget`: the caller's time in queues so far, for a caller moved here from another queue (QueueBudget). */
  async acquire(priority: Priority, signal?: AbortSignal, ifFree = false, budget?: QueueBudget): Promise<LocalPermit> {
    const { origin } = this.o.config;
    if (signal?.aborted) throw signal.reason;
    const now = this.o.clock.now();
    const permitId = `${this.instance}:${++this.permits}`;
    const verdict = admit(this.breaker, this.settings, now, permitId);
    if (!verdict.admitted)
      throw new HerdlessError("BREAKER_OPEN", "origin circuit breaker is open", { retryAfterMs: verdict.retryAfterMs });
    if (verdict.probe && this.inFlight >= this.cap()) {
      // The probe is an origin call like any other: it needs a free slot. Refuse without
      // spending the probe, so the next caller once a slot frees becomes it.
      throw new HerdlessError("BREAKER_OPEN", "origin circuit breaker is open (no free slot for the probe)", {
        retryAfterMs: 1_000,
      });
    }
    this.setBreaker(verdict.record);
    if (verdict.probe) return this.grant(true, permitId);
    if (
      this.inFlight < this.cap() &&
      this.foreground.length === 0 &&
      (priority === "foreground" || this.background.length === 0)
    ) {
      return this.grant(false, permitId);
    }
    if (ifFree) throw originBusy();
    const queue = priority === "foreground" ? this.foreground : this.background;
    if (this.foreground.length + this.background.length >= origin.maxQueue) {
      throw new HerdlessError("QUEUE_FULL", `origin queue is full (${origin.maxQueue} waiting)`, {
        retryAfterMs: 1_000,
      });
    }
    const waitMs = queueWaitMs(budget, now, origin.queueTimeoutMs);
    return new Promise<LocalPermit>((resolve, reject) => {
      const onAbort = () => {
        if (remove(queue, waiter)) {
          this.timers.clearTimeout(waiter.timer);
          reject(signal?.reason);
        }
      };
      const waiter: Waiter = {
        grant: () => {
          waiter.detach();
          resolve(this.grant(false, permitId));
        },
        fail: (error) => {
          waiter.detach();
          reject(error);
        },
        timer: this.timers.setTimeout(() => {
          remove(queue, waiter);
          waiter.fail(
            new HerdlessError("QUEUE_TIMEOUT", `no origin slot within ${origin.queueTimeoutMs} ms`, {
              retryAfterMs: 1_000,
            }),
          );
        }, waitMs),
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      queue.push(waiter);
    });
  }

  async snapshot(): Promise<GuardSnapshot> {
    return {
      breaker: this.breaker.state,
      ...(this.breaker.recoveredAt !== undefined ? { recoveredAt: this.breaker.recoveredAt } : {}),
      inFlight: this.inFlight,
      queued: this.foreground.length + this.background.length,
    };
  }

  /**
   * Takes a slot without admission, for a permit granted before a restart whose holder may
   * still be calling the origin (the caller restores the breaker through `options.breaker`).
   */
  adopt(probe: boolean): LocalPermit {
    // The restored record names its probe; a non-probe permit gets an id no record holds.
    return this.grant(probe, probe ? this.breaker.probeId : `${this.instance}:${++this.permits}`);
  }

  private grant(probe: boolean, permitId: string): LocalPermit {
    this.inFlight++;
    let released = false;
    const free = (outcome: OriginOutcome | undefined, key: string) => {
      if (released) return;
      released = true;
      this.inFlight--;
      if (outcome !== undefined)
        this.setBreaker(record(this.breaker, outcome, permitId, key, this.settings, this.o.clock.now()));
      this.next();
    };
    return {
      probe,
      release: (outcome: OriginOutcome, key = "") => free(outcome, key),
      abandon: () => free(undefined, ""),
    };
  }

  /**
   * Grants every queued caller a slot now, over the cap if need be. For a fleet member whose
   * guard is back on the fleet-wide cap: its callers queued here while Redis was away are sent
   * there (each gives this slot straight back), not left waiting for a local slot to free,
   * which may take until their queue timeout (or never, with a share of 0).
   */
  grantQueued(): void {
    for (const waiter of [...this.foreground.splice(0), ...this.background.splice(0)]) {
      this.timers.clearTimeout(waiter.timer);
      waiter.grant();
    }
  }

  /** Slots free now under the cap (none while it is full or, after {@link adopt}, over). */
  get free(): number {
    return Math.max(0, this.cap() - this.inFlight);
  }

  private cap(): number {
    return this.o.maxConcurrency?.() ?? this.o.config.origin.maxConcurrency;
  }

  private setBreaker(next: BreakerRecord): void {
    // The transitions return the same record when nothing changed.
    if (next === this.breaker) return;
    this.breaker = next;
    this.o.onBreakerChange?.(next);
  }

  /** Hands a freed slot to the next waiter, unless the breaker opened meanwhile (they wait out their timeout or the probe). */
  private next(): void {
    while (this.inFlight < this.cap()) {
      if (this.breaker.state !== "closed") return this.failWaiters();
      const waiter = this.foreground.shift() ?? this.background.shift();
      if (!waiter) return;
      this.timers.clearTimeout(waiter.timer);
      waiter.grant();
    }
  }

  /** Once the breaker opens, queued callers learn at once rather than at their timeout. */
  private failWaiters(): void {
    const retryAfterMs = Math.max(1_000, this.breaker.nextProbeAt - this.o.clock.now());
    for (const waiter of [...this.foreground.splice(0), ...this.background.splice(0)]) {
      this.timers.clearTimeout(waiter.timer);
      waiter.fail(new HerdlessError("BREAKER_OPEN", "origin circuit breaker opened while waiting", { retryAfterMs }));
    }
  }
}

function remove(queue: Waiter[], waiter: Waiter): boolean {
  const index = queue.indexOf(waiter);
  if (index < 0) return false;
  queue.splice(index, 1);
  return true;
}

/** The breaker's settings from the config: one place, for every runtime's guard. */
export function breakerSettings(config: Config): BreakerSettings {
  const { breaker } = config;
  return {
    failureThreshold: breaker.failureThreshold,
    failureRate: breaker.failureRate,
    minFailingKeys: breaker.minFailingKeys,
    windowMs: breaker.windowMs,
    probeIntervalMs: breaker.probeIntervalMs,
    // A probe on a route with a longer timeout still runs: until then it is the only one.
    probeTimeoutMs: longestOriginTimeoutMs(config),
  };
}

/** The refusal of an `ifFree` call that found no slot free (OriginGuard.acquire). */
export function originBusy(): HerdlessError {
  return new HerdlessError("ORIGIN_BUSY", "no origin slot free at once; a stored copy answers instead", {
    retryAfterMs: 1_000,
  });
}
