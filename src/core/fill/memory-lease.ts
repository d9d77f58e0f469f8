import type { Clock } from "../clock.ts";
import type { Lease, LeaseManager } from "./lease.ts";

/** A key's lease, or after release only its fence (`expiresAt` 0): the last token handed out. */
interface Slot {
  token: number;
  expiresAt: number;
}

/** Slots looked at per acquire when sweeping forgotten fences; each slot is swept once, so the cost is amortized O(1). */
const SWEEP_PER_ACQUIRE = 4;

/**
 * In-process leases: enough for one process, and the reference implementation of the
 * lease contract. Tokens keep increasing per key, and never fall below the clock's
 * epoch-ms, like the Durable Object's: an edge that falls back to local leases over a near
 * tier the coordinator filled can still replace those entries once they are stale, instead
 * of being fenced out by their tokens until they expire.
 *
 * Because a new token is at least `now`, a key's fence is only needed while the clock has
 * not passed its last token: after that a forgotten key gets `now`, still above every token
 * it was ever given. So a slot is dropped once its lease is released or expired and the
 * clock has moved past its token, and memory holds only the keys leased in the last lease
 * TTL, not every key ever seen (a URL flood once kept one fence per URL forever).
 */
export class MemoryLeaseManager implements LeaseManager {
  /** In acquire order, so the front holds the slots most likely to be forgettable. */
  private readonly slots = new Map<string, Slot>();
  constructor(private readonly clock: Clock) {}

  /** Keys with a lease or a fence still remembered (for tests and the memory bound). */
  get size(): number {
    return this.slots.size;
  }

  async acquire(key: string, ttlMs: number): Promise<Lease | undefined> {
    const now = this.clock.now();
    this.sweep(now);
    const current = this.slots.get(key);
    if (current && current.expiresAt > now) return undefined;
    const token = Math.max((current?.token ?? 0) + 1, now);
    const slot = { token, expiresAt: now + ttlMs };
    this.slots.delete(key);
    this.slots.set(key, slot);
    return { key, token, expiresAt: slot.expiresAt };
  }

  async extend(lease: Lease, ttlMs: number): Promise<boolean> {
    const current = this.slots.get(lease.key);
    const now = this.clock.now();
    if (!current || current.token !== lease.token || current.expiresAt <= now) return false;
    current.expiresAt = now + ttlMs;
    lease.expiresAt = current.expiresAt;
    return true;
  }

  async release(lease: Lease): Promise<boolean> {
    const current = this.slots.get(lease.key);
    if (!current || current.token !== lease.token || current.expiresAt === 0) return false;
    const now = this.clock.now();
    if (forgettable(current.token, 0, now)) this.slots.delete(lease.key);
    else current.expiresAt = 0;
    return true;
  }

  /** Drops forgettable slots from the front, stopping at the first one still needed. */
  private sweep(now: number): void {
    let looked = 0;
    for (const [key, slot] of this.slots) {
      if (looked++ >= SWEEP_PER_ACQUIRE || !forgettable(slot.token, slot.expiresAt, now)) return;
      this.slots.delete(key);
    }
  }
}

/** No live lease, and the clock is past the token: a new token (`now`) would beat it anyway. */
function forgettable(token: number, expiresAt: number, now: number): boolean {
  return expiresAt <= now && token < now;
}
