import type { Clock } from "../../core/clock.ts";
import { HerdlessError } from "../../core/errors.ts";
import type { Timers } from "../../core/guard/local-guard.ts";
import type { RedisConnection } from "./connection.ts";
import { renewPermit } from "./guard-scripts.ts";

export interface PermitRenewalOptions {
  connection: RedisConnection;
  permitsKey: string;
  /** The permit's id in the permit set. */
  id: string;
  /** The permit's lease; it is renewed every third of it. */
  ttlMs: number;
  clock: Clock;
  timers: Timers;
  /** False while the permit is counted on the local share (Redis away): the rejoin writes it back with a fresh lease. */
  inRedis: () => boolean;
  /** A renewal that failed on the way (not one refused): the guard degrades to its local share. */
  onError: (cause: unknown) => void;
}

/**
 * Keeps a fleet permit's lease while its holder's call runs: a streamed body may last until
 * `origin.streamTimeoutMs`, far past the lease (origin.timeoutMs + 5 s), and a lapsed permit
 * frees its slot for another call while this one still runs. Renews every third of the
 * lease (as the Worker's guard does, do-guard.ts); `lost` aborts when Redis answers that the
 * permit is gone, and the call must stop then (OriginPermit.lost). A renewal that cannot
 * reach Redis loses nothing: the guard counts the permit on its local share until Redis is
 * back, then writes it back.
 *
 * @example
 * const renewal = renewPermitLease({ connection, permitsKey, id, ttlMs, clock, timers, inRedis, onError });
 * // … the call, stopped on renewal.lost … then renewal.stop()
 */
export function renewPermitLease(o: PermitRenewalOptions): { lost: AbortSignal; stop: () => void } {
  const lost = new AbortController();
  let stopped = false;
  let timer: unknown;
  const tick = async () => {
    if (o.inRedis()) {
      const expiresAt = o.clock.now() + o.ttlMs;
      const held = await o.connection
        .run("guard renew", (client) => renewPermit(client, o.permitsKey, o.id, expiresAt))
        .catch((cause: unknown) => void o.onError(cause));
      if (stopped) return;
      if (held === false) {
        stopped = true;
        const why = `origin permit lost: the fleet's permit set no longer holds ${o.id}`;
        return lost.abort(new HerdlessError("COORDINATOR_UNAVAILABLE", why));
      }
    }
    if (!stopped) timer = o.timers.setTimeout(() => void tick(), o.ttlMs / 3);
  };
  timer = o.timers.setTimeout(() => void tick(), o.ttlMs / 3);
  return {
    lost: lost.signal,
    stop: () => {
      stopped = true;
      o.timers.clearTimeout(timer);
    },
  };
}
