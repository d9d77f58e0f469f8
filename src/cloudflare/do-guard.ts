import { systemClock, type Clock } from "../core/clock.ts";
import { HerdlessError } from "../core/errors.ts";
import { realTimers, type Timers } from "../core/guard/local-guard.ts";
import type { GuardSnapshot, OriginGuard, OriginOutcome, OriginPermit, Priority } from "../core/guard/origin-guard.ts";
import type { GuardGrant, OriginGuardObject } from "./origin-guard-object.ts";

/** A permit of the guard object, with its id and whether it is the breaker's probe (for logs and tests). */
export interface GuardPermit extends OriginPermit {
  readonly permitId: string;
  readonly probe: boolean;
}

export interface DurableObjectGuardOptions {
  /**
   * Give up on the object after this long with COORDINATOR_UNAVAILABLE (a permit granted
   * later is handed back). The object itself answers within origin.queueTimeoutMs, so
   * something above that, e.g. queueTimeoutMs + 5 s. Default: wait as long as the call lasts.
   */
  waitTimeoutMs?: number;
  /** Where the guard object is created, when it is (coordinator.locationHint). */
  locationHint?: DurableObjectLocationHint;
  timers?: Timers;
  /** The holder's clock, for its permits' leases. Default: the system clock. */
  clock?: Clock;
  /**
   * Hands a successful call's permit back behind the caller: `release` resolves at once and
   * the call to the object runs as this work (ctx.waitUntil), so the answer that follows an
   * origin call does not wait a round trip to the deployment's one guard object. Failures and
   * probes are still awaited (the breaker must count them before it grants another permit).
   * Default: `release` always waits.
   */
  background?: (work: Promise<unknown>) => void;
}

/**
 * The {@link OriginGuard} of a Worker: every call goes to the one {@link OriginGuardObject}
 * of the deployment, so the cap and the breaker hold across all data centers.
 *
 * - Refusals (QUEUE_FULL, QUEUE_TIMEOUT, BREAKER_OPEN) reject with that HerdlessError and
 *   its `retryAfterMs`.
 * - An unreachable or throwing object rejects with COORDINATOR_UNAVAILABLE (cause attached)
 *   after one more try on a fresh stub; the caller makes no origin call (see deploymentGuard).
 * - `release` never rejects: if the object cannot be told, the permit's lease frees the slot.
 * - `signal` is honoured here (it cannot cross RPC): an aborted wait rejects with its reason
 *   and a permit granted afterwards is handed back uncounted.
 *
 * @example
 * const guard = new DurableObjectGuard(env.GUARD);
 * const permit = await guard.acquire("foreground", signal);
 * try { ... } finally { await permit.release("success"); }
 */
export class DurableObjectGuard implements OriginGuard {
  private stub: DurableObjectStub<OriginGuardObject> | undefined;
  private readonly timers: Timers;
  private readonly clock: Clock;

  constructor(
    private readonly namespace: DurableObjectNamespace<OriginGuardObject>,
    private readonly name = "global",
    private readonly options: DurableObjectGuardOptions = {},
  ) {
    this.timers = options.timers ?? realTimers;
    this.clock = options.clock ?? systemClock;
  }

  async acquire(priority: Priority, signal?: AbortSignal, ifFree = false): Promise<GuardPermit> {
    if (signal?.aborted) throw signal.reason;
    // The object starts the lease when it grants, which is after this.
    const askedAt = this.clock.now();
    // A caller that gives up is withdrawn from the object's queue by this id (an abort cannot cross RPC).
    const waiterId = signal ? crypto.randomUUID() : undefined;
    // Awaited inside, so the RPC result's per-branch promise types collapse into GuardGrant.
    const grant = await this.giveUpOn(
      this.call("acquire", async (stub): Promise<GuardGrant> => await stub.acquire(priority, ifFree, waiterId)),
      signal,
      () => {
        if (waiterId) void this.call("withdraw", (stub) => stub.withdraw(waiterId)).catch(() => undefined);
      },
    );
    if (!grant.ok) throw new HerdlessError(grant.code, grant.message, { retryAfterMs: grant.retryAfterMs });
    return this.permit(grant.permitId, grant.probe, grant.leaseMs, askedAt);
  }

  snapshot(): Promise<GuardSnapshot> {
    return this.call("snapshot", (stub) => stub.snapshot());
  }

  private permit(permitId: string, probe: boolean, leaseMs: number, askedAt: number): GuardPermit {
    let released = false;
    const lease = this.renewing(permitId, leaseMs, askedAt);
    return {
      permitId,
      probe,
      lost: lease.lost,
      release: async (outcome: OriginOutcome, key?: string) => {
        if (released) return;
        released = true;
        lease.stop();
        const handedBack = this.call("release", (stub) => stub.release(permitId, outcome, key)).catch(() => undefined);
        // Only a plain success goes behind: it frees a slot (held a moment longer is safe).
        // A failure or a probe's outcome moves the breaker, which must know before the next permit.
        if (this.options.background && outcome === "success" && !probe) this.options.background(handedBack);
        else await handedBack;
      },
    };
  }

  /**
   * Keeps a permit's lease alive while its holder runs: a renewal every third of the lease,
   * and `lost` aborted once the lease cannot be vouched for: the object answered that the
   * permit is gone, or no renewal was confirmed for two thirds of a lease (the object may
   * end it a third of a lease later, and by then the holder's call has stopped). Times
   * are the holder's: the object starts each lease after the holder asked, so the lease
   * lasts at least `leaseMs` from the asking.
   */
  private renewing(permitId: string, leaseMs: number, askedAt: number): { lost: AbortSignal; stop: () => void } {
    const lost = new AbortController();
    let confirmedAt = askedAt;
    let timer: unknown;
    let stopped = false;
    const lose = (why: string) => {
      stopped = true;
      lost.abort(new HerdlessError("COORDINATOR_UNAVAILABLE", `origin permit lost: ${why}`));
    };
    const tick = async () => {
      const asked = this.clock.now();
      const held = await this.call("renew", (stub) => stub.renew(permitId)).catch(() => undefined);
      if (stopped) return;
      if (held === false) return lose(`origin guard "${this.name}" no longer holds it`);
      if (held === true) confirmedAt = asked;
      if (this.clock.now() - confirmedAt >= (leaseMs * 2) / 3)
        return lose(`origin guard "${this.name}" not reached for ${this.clock.now() - confirmedAt} ms`);
      timer = this.timers.setTimeout(() => void tick(), leaseMs / 3);
    };
    timer = this.timers.setTimeout(() => void tick(), leaseMs / 3);
    return {
      lost: lost.signal,
      stop: () => {
        stopped = true;
        this.timers.clearTimeout(timer);
      },
    };
  }

  /**
   * Settles with `pending` unless the caller aborts (then `withdraw` tells the object) or the
   * wait times out first; a late permit goes back.
   */
  private giveUpOn(
    pending: Promise<GuardGrant>,
    signal: AbortSignal | undefined,
    withdraw: () => void,
  ): Promise<GuardGrant> {
    const { waitTimeoutMs } = this.options;
    if (!signal && waitTimeoutMs === undefined) return pending;
    return new Promise<GuardGrant>((resolve, reject) => {
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        if (timer !== undefined) this.timers.clearTimeout(timer);
        return true;
      };
      const onAbort = () => {
        if (!settle()) return;
        withdraw();
        reject(signal?.reason);
      };
      const timer =
        waitTimeoutMs === undefined
          ? undefined
          : this.timers.setTimeout(() => {
              if (settle())
                reject(
                  new HerdlessError(
                    "COORDINATOR_UNAVAILABLE",
                    `origin guard "${this.name}" did not answer within ${waitTimeoutMs} ms`,
                  ),
                );
            }, waitTimeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      pending.then(
        (grant) => {
          if (settle()) resolve(grant);
          else if (grant.ok) void this.call("abandon", (stub) => stub.abandon(grant.permitId)).catch(() => undefined);
        },
        (error: unknown) => {
          if (settle()) reject(error);
        },
      );
    });
  }

  /**
   * One RPC, with one more try on a fresh stub: a stub that saw its object reset stays
   * broken, so without it every edge's first call after a guard reset would fail and
   * refuse its origin calls. Not retried: an overloaded object (retrying feeds the overload).
   * A retried `acquire` may, rarely, leave a first grant that was never delivered; its lease
   * frees that slot.
   */
  private async call<T>(what: string, fn: (stub: DurableObjectStub<OriginGuardObject>) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const { locationHint } = this.options;
        this.stub ??= this.namespace.get(
          this.namespace.idFromName(this.name),
          locationHint ? { locationHint } : undefined,
        );
        return await fn(this.stub);
      } catch (cause) {
        this.stub = undefined;
        if (attempt === 1 && !isOverloaded(cause)) continue;
        const reason = cause instanceof Error ? cause.message : String(cause);
        throw new HerdlessError(
          "COORDINATOR_UNAVAILABLE",
          `origin guard "${this.name}" unavailable (${what}): ${reason}`,
          { cause },
        );
      }
    }
  }
}

/** Durable Object errors flag overload (`overloaded: true`); such calls must not be repeated. */
function isOverloaded(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { overloaded?: unknown }).overloaded === true;
}
