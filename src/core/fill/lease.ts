/** A held lease: exclusive right to fetch a key from the origin until `expiresAt`. */
export interface Lease {
  key: string;
  /** Fencing token: strictly increasing per key across all holders, ever. */
  token: number;
  expiresAt: number;
}

/**
 * The lease contract that each runtime implements (in-process map, Redis `SET NX PX`,
 * Durable Object storage). A lease that is not released expires after its TTL, so a
 * holder that dies never wedges a key. `extend` and `release` act only on the caller's
 * own token.
 */
export interface LeaseManager {
  /** Takes the lease if free (or expired); undefined when someone else holds it. */
  acquire(key: string, ttlMs: number): Promise<Lease | undefined>;
  /**
   * Optional, for managers shared by several processes: the holder marks its lease as a
   * refresh-ahead (refresh-ahead.ts) renewing the copy that goes stale at `renews`; the mark
   * lives and goes with the lease. {@link renewing} reads it, so a process that did not
   * start the renewal serves the copy that expires meanwhile instead of waiting on the lease.
   */
  markRenewing?(lease: Lease, renews: number): Promise<void>;
  /** The `renews` of the current holder's mark; undefined when the lease is free or unmarked. */
  renewing?(key: string): Promise<number | undefined>;
  /**
   * Optional, for managers whose store can lose a lease while it runs (a Redis that lost its
   * data): whether `lease` is still its holder's. Asked only by a flight whose origin permit
   * had to wait (held-flight.ts), never on the way of an ordinary miss.
   */
  holds?(lease: Lease): Promise<boolean>;
  /** Pushes the expiry out; false when the lease was lost (expired and taken). */
  extend(lease: Lease, ttlMs: number): Promise<boolean>;
  /** Frees the lease; false when it was no longer ours. */
  release(lease: Lease): Promise<boolean>;
}
