import type { Clock } from "../clock.ts";
import type { Lease, LeaseManager } from "./lease.ts";

/**
 * In-process leases: enough for one process, and the reference implementation of the
 * lease contract. Tokens keep increasing per key for the life of the process, and never
 * fall below the clock's epoch-ms, like the Durable Object's: an edge that falls back to
 * local leases over a near tier the coordinator filled can still replace those entries
 * once they are stale, instead of being fenced out by their tokens until they expire.
 */
export class MemoryLeaseManager implements LeaseManager {
  private readonly held = new Map<string, Lease>();
  private readonly fences = new Map<string, number>();
  constructor(private readonly clock: Clock) {}

  async acquire(key: string, ttlMs: number): Promise<Lease | undefined> {
    const current = this.held.get(key);
    const now = this.clock.now();
    if (current && current.expiresAt > now) return undefined;
    const token = Math.max((this.fences.get(key) ?? 0) + 1, now);
    this.fences.set(key, token);
    const lease = { key, token, expiresAt: now + ttlMs };
    this.held.set(key, lease);
    return { ...lease };
  }

  async extend(lease: Lease, ttlMs: number): Promise<boolean> {
    const current = this.held.get(lease.key);
    if (!current || current.token !== lease.token || current.expiresAt <= this.clock.now()) return false;
    current.expiresAt = this.clock.now() + ttlMs;
    lease.expiresAt = current.expiresAt;
    return true;
  }

  async release(lease: Lease): Promise<boolean> {
    const current = this.held.get(lease.key);
    if (!current || current.token !== lease.token) return false;
    this.held.delete(lease.key);
    return true;
  }
}
