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

/**
 * Runs `fn` while holding the lease on `key`; returns undefined without running it when
 * the lease is held elsewhere. The lease is released in `finally`, and `signal` aborts
 * when the lease expires before `fn` finishes, so work never outlives its right to write.
 *
 * @example
 * const result = await withLease(leases, key, 15_000, async (signal, lease) => fetchOrigin(url, { signal }));
 */
export async function withLease<T>(
  leases: LeaseManager,
  key: string,
  ttlMs: number,
  fn: (signal: AbortSignal, lease: Lease) => Promise<T>,
): Promise<{ ran: true; value: T } | { ran: false }> {
  const lease = await leases.acquire(key, ttlMs);
  if (!lease) return { ran: false };
  const expiry = new AbortController();
  const timer = setTimeout(() => expiry.abort(new Error(`lease on ${key} expired after ${ttlMs} ms`)), ttlMs);
  try {
    return { ran: true, value: await fn(expiry.signal, lease) };
  } finally {
    clearTimeout(timer);
    await leases.release(lease).catch(() => false);
  }
}
