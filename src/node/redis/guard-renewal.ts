import type { Clock } from "../../core/clock.ts";
import { HerdlessError } from "../../core/errors.ts";
import type { Timers } from "../../core/guard/local-guard.ts";
import type { RedisConnection } from "./connection.ts";
import { renewPermits, type EpochKeys, type FleetEpoch } from "./guard-epoch.ts";

/**
 * How often a process renews the permits it holds: one script for all of them, whatever
 * their number. Also how soon a holder writes back the permits Redis lost.
 */
const RENEW_EVERY_MS = 1_000;

/** The renewal period for a permit lease of `ttlMs`: every second, or a third of a shorter lease. */
export function renewEveryMs(ttlMs: number): number {
  return Math.min(RENEW_EVERY_MS, ttlMs / 3);
}

/**
 * How long new permits wait after Redis lost its data (guard-epoch.ts): two renewal periods,
 * so every holder's renewal has run and answered by then, on a loaded machine and with the
 * processes' clocks a little apart (`now` is each process's own).
 */
export function lossGraceMs(ttlMs: number): number {
  return 2 * renewEveryMs(ttlMs);
}

export interface PermitRenewalsOptions {
  connection: RedisConnection;
  keys: EpochKeys;
  /** What this process knows of Redis's data; new permits wait its grace after a loss. */
  epoch: FleetEpoch;
  /** A permit's lease: a dead holder's slot frees after this long. */
  ttlMs: number;
  /** Permits written back after a loss only while fewer than this are live. */
  maxConcurrency: number;
  clock: Clock;
  timers: Timers;
  /** False while the permits are counted on the local share (Redis away): the rejoin writes them back. */
  inRedis: () => boolean;
  /** A renewal that failed on the way (not one refused): the guard degrades to its local share. */
  onError: (cause: unknown) => void;
}

/**
 * Keeps the fleet permits of one process while their calls run: a streamed body may last
 * until `origin.streamTimeoutMs`, far past the lease (origin.timeoutMs + 5 s), and a lapsed
 * permit frees its slot for another call while this one still runs. Every second one script
 * extends them all and writes back any that Redis no longer holds (it lost its data) while
 * the cap has room; a permit with no room is `lost`: its call stops then (OriginPermit.lost),
 * since its slot may be another's. A renewal that cannot reach Redis loses nothing: the
 * guard counts the permits on its local share until Redis is back, then writes them back.
 *
 * @example
 * const renewals = new PermitRenewals({ connection, keys, epoch, ttlMs, maxConcurrency, clock, timers, inRedis, onError });
 * const lost = renewals.hold(id); // … the call, stopped on lost … then renewals.drop(id)
 */
export class PermitRenewals {
  /** Held permits, oldest first: the first written back when the cap has room for only some. */
  private readonly held = new Map<string, AbortController>();
  private timer: unknown;
  private ticking = false;

  constructor(private readonly o: PermitRenewalsOptions) {}

  /** Renews `id` until {@link drop}; the signal aborts when Redis lost it and the cap had no room. */
  hold(id: string): AbortSignal {
    const lost = new AbortController();
    this.held.set(id, lost);
    this.schedule();
    return lost.signal;
  }

  drop(id: string): void {
    this.held.delete(id);
    if (this.held.size > 0 || this.timer === undefined) return;
    this.o.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.ticking || this.held.size === 0) return;
    this.timer = this.o.timers.setTimeout(() => void this.tick(), renewEveryMs(this.o.ttlMs));
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    this.ticking = true;
    try {
      const ids = [...this.held.keys()];
      if (!this.o.inRedis() || ids.length === 0) return;
      const now = this.o.clock.now();
      const r = { now, expiresAt: now + this.o.ttlMs, maxConcurrency: this.o.maxConcurrency, ids };
      const lost = await this.o.connection
        .run("guard renew", (client) => renewPermits(client, this.o.keys, this.o.epoch, r))
        .catch((cause: unknown) => void this.o.onError(cause));
      for (const id of lost ?? []) this.lose(id);
    } finally {
      this.ticking = false;
      this.schedule();
    }
  }

  private lose(id: string): void {
    const lost = this.held.get(id);
    if (!lost) return;
    this.held.delete(id);
    const why = `origin permit lost: Redis no longer holds ${id} and the fleet's cap has no room for it`;
    lost.abort(new HerdlessError("COORDINATOR_UNAVAILABLE", why));
  }
}
