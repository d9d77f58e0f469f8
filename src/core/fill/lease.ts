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
  /** Pushes the expiry out; false when the lease was lost (expired and taken). */
  extend(lease: Lease, ttlMs: number): Promise<boolean>;
  /** Frees the lease; false when it was no longer ours. */
  release(lease: Lease): Promise<boolean>;
}
