import { HerdlessError } from "../errors.ts";
import type { OriginGuard } from "../guard/origin-guard.ts";
import type { Lease, LeaseManager } from "./lease.ts";

/*
 * What a flight that holds its key's lease does around its origin call: it stops at the
 * lease's end, and calls only while it still holds the lease.
 */

/** The origin guard as one flight under its key's lease uses it, and whether it found that lease taken. */
export interface LeaseBoundGuard {
  guard: OriginGuard;
  /** True once a permit was refused because the lease was no longer the flight's: it made no origin call. */
  taken(): boolean;
}

/**
 * The guard of one flight: a permit the flight had to wait for (OriginPermit.waited) is
 * handed over only if the flight still holds its lease (LeaseManager.holds, one read),
 * otherwise given back unused and the call refused (LEASE_LOST, the origin sees nothing).
 * A lease can go while its flight queues: Redis lost its data and another process's fill
 * took the key (and kept it: lease.ts reassert in a fleet). Calling anyway made two origin
 * requests for the key; the flight waits on the one that holds it instead (KeyCoordinator).
 * A permit granted at once is handed over unchecked: an ordinary miss makes no extra read.
 *
 * @example
 * const bound = leaseBound(guard, leases, lease);
 * const result = await fetchAndSettle(ctx, { ...deps, guard: bound.guard }, ...);
 * if (bound.taken()) // wait on the key's holder
 */
export function leaseBound(guard: OriginGuard, leases: LeaseManager, lease: Lease): LeaseBoundGuard {
  let taken = false;
  if (!leases.holds) return { guard, taken: () => false };
  const holds = (held: Lease) => leases.holds?.(held) ?? Promise.resolve(true);
  return {
    guard: {
      snapshot: () => guard.snapshot(),
      acquire: async (priority, signal, ifFree) => {
        const permit = await guard.acquire(priority, signal, ifFree);
        // Unreadable (Redis stalled): the flight goes on, as it did before this check.
        if (!permit.waited || (await holds(lease).catch(() => true))) return permit;
        taken = true;
        await permit.release("neutral");
        throw new HerdlessError(
          "LEASE_LOST",
          `lease on ${lease.key} was taken while its fill waited for an origin slot`,
        );
      },
    },
    taken: () => taken,
  };
}

/**
 * Aborts `signal` after `lockLeaseMs`: the right to write ends with the lease, and an origin
 * call still running then is cancelled. `clear` once the flight no longer needs it.
 */
export function leaseExpiry(key: string, lockLeaseMs: number): { signal: AbortSignal; clear: () => void } {
  const expiry = new AbortController();
  const timer = setTimeout(
    () => expiry.abort(new HerdlessError("LEASE_LOST", `lease on ${key} expired after ${lockLeaseMs} ms`)),
    lockLeaseMs,
  );
  return { signal: expiry.signal, clear: () => clearTimeout(timer) };
}
