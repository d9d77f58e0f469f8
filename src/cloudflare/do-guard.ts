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
 *   after one more try on a fresh stub; the caller falls back to its local guard.
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

  constructor(
    private readonly namespace: DurableObjectNamespace<OriginGuardObject>,
    private readonly name = "global",
    private readonly options: DurableObjectGuardOptions = {},
  ) {
    this.timers = options.timers ?? realTimers;
  }

  async acquire(priority: Priority, signal?: AbortSignal): Promise<GuardPermit> {
    if (signal?.aborted) throw signal.reason;
    // Awaited inside, so the RPC result's per-branch promise types collapse into GuardGrant.
    const grant = await this.giveUpOn(
      this.call("acquire", async (stub): Promise<GuardGrant> => await stub.acquire(priority)),
      signal,
    );
    if (!grant.ok) throw new HerdlessError(grant.code, grant.message, { retryAfterMs: grant.retryAfterMs });
    return this.permit(grant.permitId, grant.probe);
  }

  snapshot(): Promise<GuardSnapshot> {
    return this.call("snapshot", (stub) => stub.snapshot());
  }

  private permit(permitId: string, probe: boolean): GuardPermit {
    let released = false;
    return {
      permitId,
      probe,
      release: async (outcome: OriginOutcome, key?: string) => {
        if (released) return;
        released = true;
        const handedBack = this.call("release", (stub) => stub.release(permitId, outcome, key)).catch(() => undefined);
        // Only a plain success goes behind: it frees a slot (held a moment longer is safe).
        // A failure or a probe's outcome moves the breaker, which must know before the next permit.
        if (this.options.background && outcome === "success" && !probe) this.options.background(handedBack);
        else await handedBack;
      },
    };
  }

  /** Settles with `pending` unless the caller aborts or the wait times out first; a late permit goes back. */
  private giveUpOn(pending: Promise<GuardGrant>, signal: AbortSignal | undefined): Promise<GuardGrant> {
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
        if (settle()) reject(signal?.reason);
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
   * broken, so without it every edge's first call after a guard reset would fail and fall
   * back to its local guard. Not retried: an overloaded object (retrying feeds the overload).
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
