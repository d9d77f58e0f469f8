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
 * The key's lease is held back further ({@link hold}): written only when something needs it
 * in storage, first of all the origin request (see {@link WriteBehindLeases}).
 *
 * An object that dies in that tick loses them as it would lose a write it had not made yet:
 * the entry is fetched again, the lease expires after `coordinator.lockLeaseMs`.
 *
 * @example
 * const later = new AfterAnswer((work) => this.ctx.waitUntil(work));
 * const store = new WriteBehindStore(new DurableObjectStore(this.ctx.storage, clock), later, clock);
 */
export class AfterAnswer {
  /** In order; `held`: made by {@link flush} only, never by the timer. */
  private writes: Array<{ write: () => unknown; held: boolean }> = [];
  private timerSet = false;

  /** @param keep keeps the timer's work alive (ctx.waitUntil) */
  constructor(private readonly keep: (work: Promise<unknown>) => void) {}

  /**
   * Runs `write` in a timer after the current answer, with the other writes deferred until
   * then, in order. A write may be async: its rejection is caught like a throw.
   */
  defer(write: () => unknown): void {
    this.writes.push({ write, held: false });
    if (this.timerSet) return;
    this.timerSet = true;
    this.keep(
      new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() => {
        this.timerSet = false;
        this.run((item) => !item.held);
      }),
    );
  }

  /** Runs `write` at the next {@link flush}, in order with the deferred writes, and not before. */
  hold(write: () => unknown): void {
    this.writes.push({ write, held: true });
  }

  /** Runs the deferred and held writes now (before a read that must see them, a write that must follow them, or an origin request that must follow the lease). */
  flush(): void {
    this.run(() => true);
  }

  private run(due: (item: { held: boolean }) => boolean): void {
    const writes = this.writes.filter(due).map((item) => item.write);
    this.writes = this.writes.filter((item) => !due(item));
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
 * The object's {@link StorageLeaseManager} with its writes made after the decisions: a lease
 * is taken at once and written a moment later, a release written after the answer
 * ({@link AfterAnswer}).
 *
 * The lease's write is held back ({@link AfterAnswer.hold}) so that the first call the new
 * holder makes, to the deployment's guard object, leaves before the write: workerd's output
 * gate holds every outgoing call until the writes made before it are committed, which put the
 * lease's commit between the edge and the guard on every miss (a replicated commit on
 * Cloudflare). The origin is asked only once the lease is written (the object's `fetch` writes
 * what was deferred first, see {@link AfterAnswer.flush}), so the output gate still holds the
 * origin request until the lease is durable: an object that dies before the commit has asked
 * no origin, and a permit it was granted meanwhile is freed by that permit's lease. A flight
 * that ends without asking the origin (the guard refused it, the entry was there after all)
 * never writes its lease. Taking, extending or releasing a lease writes what was deferred
 * first, so a lease is never seen free while held, nor held after its release.
 */
export class WriteBehindLeases implements LeaseManager {
  /** Leases taken whose write is still deferred, by key. */
  private readonly unwritten = new Map<string, Lease>();
  /** Leases taken here and not released yet. */
  private readonly out = new Set<Lease>();

  constructor(
    private readonly inner: StorageLeaseManager,
    private readonly later: AfterAnswer,
    /** Hears each release, once its write (if any) is deferred. */
    private readonly onReleased?: () => void,
  ) {}

  async acquire(key: string, ttlMs: number): Promise<Lease | undefined> {
    this.later.flush();
    const taken = this.inner.take(key, ttlMs);
    if (!taken) return undefined;
    this.unwritten.set(key, taken.lease);
    this.out.add(taken.lease);
    this.later.hold(() => {
      // Released before it was written: nothing to write (see release).
      if (this.unwritten.get(key) !== taken.lease) return;
      this.unwritten.delete(key);
      taken.write();
    });
    return taken.lease;
  }

  extend(lease: Lease, ttlMs: number): Promise<boolean> {
    this.later.flush();
    return this.inner.extend(lease, ttlMs);
  }

  /**
   * What the release will say: false when the lease was no longer ours. A lease released
   * before its write was made is never written: no origin was asked under it (the object's
   * fetch writes it first), so storage need not hear of it. A flight refused by the guard
   * (an open breaker, a full queue) then writes nothing: it wrote ~9 rows, and made a table
   * in a new object for every distinct URL an attacker sent while the origin was down.
   */
  async release(lease: Lease): Promise<boolean> {
    this.out.delete(lease);
    let ours: boolean;
    if (this.unwritten.get(lease.key) === lease) {
      this.unwritten.delete(lease.key);
      ours = this.inner.live(lease);
    } else {
      ours = this.inner.current(lease.key)?.token === lease.token;
      this.later.defer(() => this.inner.release(lease));
    }
    this.onReleased?.();
    return ours;
  }

  /**
   * From when the leases keep nothing a later holder needs (see StorageLeaseManager.quietFrom);
   * undefined while a lease taken here is out (its release asks again).
   */
  quietFrom(): number | undefined {
    return this.out.size > 0 ? undefined : this.inner.quietFrom();
  }
}
