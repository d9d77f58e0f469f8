import type { Entry } from "../core/http/entry.ts";
import type { Lease, LeaseManager } from "../core/fill/lease.ts";
import type { Store } from "../core/store/store.ts";
import type { DurableObjectStore } from "./do-store.ts";
import type { StorageLeaseManager } from "./storage-lease.ts";
import { log } from "./log.ts";

/**
 * The storage writes a key's object makes once it has its answer (the entry it fetched,
 * the lease it frees), run after that answer has left.
 *
 * workerd's output gate holds every answer of an object until the storage writes made before
 * it are durable. The writes that follow an origin fetch decide nothing the answer says: the
 * entry is the answer, and the lease only keeps others from the origin meanwhile. Run in a
 * timer (a microtask would still be before the answer), they cost the caller no commit: an
 * object called from an edge answers as soon as its origin did. Until they run, the object
 * itself reads what they will write ({@link WriteBehindStore}), and anything that must see
 * storage as it will be (a lease to take, a purge, the cleanup alarm) runs them first.
 *
 * An object that dies in that tick loses them as it would lose a write it had not made yet:
 * the entry is fetched again, the lease expires after `coordinator.lockLeaseMs`.
 *
 * @example
 * const later = new AfterAnswer((work) => this.ctx.waitUntil(work));
 * const store = new WriteBehindStore(new DurableObjectStore(this.ctx.storage, clock), later, clock);
 */
export class AfterAnswer {
  private writes: Array<() => unknown> = [];

  /** @param keep keeps the timer's work alive (ctx.waitUntil) */
  constructor(private readonly keep: (work: Promise<unknown>) => void) {}

  /**
   * Runs `write` in a timer after the current answer, with the other writes deferred until
   * then, in order. A write may be async: its rejection is caught like a throw.
   */
  defer(write: () => unknown): void {
    this.writes.push(write);
    if (this.writes.length > 1) return;
    this.keep(new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() => this.flush()));
  }

  /** Runs the deferred writes now (before a read that must see them, or a write that must follow them). */
  flush(): void {
    const writes = this.writes;
    this.writes = [];
    // As a failed write in place would have: the entry is fetched again, the lease expires.
    // An object reset in that tick (its storage gone) lands here too, never as an unhandled rejection.
    const failed = (error: unknown) => log("warn", "a storage write after the answer failed", error);
    for (const write of writes) {
      try {
        const done = write();
        if (done instanceof Promise) done.catch(failed);
      } catch (error) {
        failed(error);
      }
    }
  }
}

/**
 * The object's {@link DurableObjectStore} with its puts written after the answer
 * ({@link AfterAnswer}). A put is judged at once, as the store would judge it (too large, or
 * fenced out by a newer token), and read back from memory until written.
 */
export class WriteBehindStore implements Store {
  private readonly pending = new Map<string, Entry>();

  constructor(
    private readonly inner: DurableObjectStore,
    private readonly later: AfterAnswer,
  ) {}

  async get(key: string): Promise<Entry | undefined> {
    return this.pending.get(key) ?? this.inner.get(key);
  }

  async put(entry: Entry): Promise<boolean> {
    const waiting = this.pending.get(entry.key);
    if (waiting && waiting.token > entry.token) return false;
    if (!this.inner.accepts(entry)) return false;
    this.pending.set(entry.key, entry);
    this.later.defer(() => {
      if (this.pending.get(entry.key) === entry) this.pending.delete(entry.key);
      this.inner.putNow(entry);
    });
    return true;
  }

  async delete(key: string): Promise<boolean> {
    this.later.flush();
    return this.inner.delete(key);
  }
}

/**
 * The object's {@link StorageLeaseManager} with releases written after the answer
 * ({@link AfterAnswer}); taking or extending a lease first writes what was deferred, so a
 * lease is never seen held after its release.
 */
export class WriteBehindLeases implements LeaseManager {
  constructor(
    private readonly inner: StorageLeaseManager,
    private readonly later: AfterAnswer,
  ) {}

  acquire(key: string, ttlMs: number): Promise<Lease | undefined> {
    this.later.flush();
    return this.inner.acquire(key, ttlMs);
  }

  extend(lease: Lease, ttlMs: number): Promise<boolean> {
    this.later.flush();
    return this.inner.extend(lease, ttlMs);
  }

  /** What the release will say: false when the lease was no longer ours. */
  async release(lease: Lease): Promise<boolean> {
    const ours = this.inner.current(lease.key)?.token === lease.token;
    this.later.defer(() => this.inner.release(lease));
    return ours;
  }
}
