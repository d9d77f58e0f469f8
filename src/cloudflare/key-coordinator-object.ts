import { DurableObject } from "cloudflare:workers";
import { systemClock, type Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import type { FillRequest } from "../core/fill/coordinator.ts";
import { KeyCoordinator } from "../core/fill/key-coordinator.ts";
import { MAX_LIFETIME_MS } from "../core/http/freshness.ts";
import { workerdDecoding } from "./content-decoding.ts";
import { DurableObjectStore } from "./do-store.ts";
import { DurableObjectBackoffStore } from "./do-backoff-store.ts";
import { deploymentGuard, guardFrontFor } from "./deployment-guard.ts";
import { configFromEnv, type ConfigEnv } from "./config-env.ts";
import type { OriginGuardObject } from "./origin-guard-object.ts";

/** What a key's coordinator reads: its config, and the deployment's guard. */
export interface CoordinatorEnv extends ConfigEnv {
  GUARD: DurableObjectNamespace<OriginGuardObject>;
}
import { StorageLeaseManager } from "./storage-lease.ts";
import { SqlTables } from "./sql-tables.ts";
import { AfterAnswer, WriteBehindLeases, WriteBehindStore } from "./after-answer.ts";
import { toWire, type WireFillResult } from "./fill-wire.ts";
import { originFetch } from "./interim-fetch.ts";
import { logFailedOriginCall } from "./log.ts";
import { BackgroundWork } from "../core/background-work.ts";

/** Test-only hooks of {@link KeyCoordinatorObject}; see its `[coordinatorTestHooks]` method. */
export const coordinatorTestHooks: unique symbol = Symbol("herdless.coordinatorTestHooks");
export interface CoordinatorTestHooks {
  /** Rebuilds the object's filler with this clock, config and guard object name. */
  use(options: { clock?: Clock; config?: Config; guardName?: string }): void;
  /** Resolves once the background refreshes the object started are done. */
  settled(): Promise<void>;
}

/** What one object runs; rebuilt by the test hooks, and after the object dropped its storage (freeIfIdle). */
interface Parts {
  tables: SqlTables;
  filler: KeyCoordinator;
  store: DurableObjectStore;
  backoff: DurableObjectBackoffStore;
  leases: WriteBehindLeases;
  clock: Clock;
}

/** What the object's parts are built with: the defaults, or what a test gave (its test hooks). */
interface Setup {
  clock?: Clock;
  config?: Config;
  guardName?: string;
}

/**
 * The single place in the world that talks to the origin for one cache key: the Worker
 * addresses it as `env.COORDINATOR.idFromName(primaryKey)` and calls {@link fill} over RPC.
 *
 * It hosts the core {@link KeyCoordinator}: its copy of the entry lives in the object's SQLite
 * storage (so every data center is served from it), its lease is persisted (an object
 * evicted mid-fetch leaves the key locked for at most `coordinator.lockLeaseMs`, and the
 * fencing token stops the evicted writer), and its single-flight collapses concurrent
 * callers because RPC calls interleave while one of them awaits the origin `fetch`.
 * A storable answer comes back as a `stream` result as soon as its head arrived: each
 * caller (each edge, in any data center) gets its own ReadableStream of the one origin
 * body, which the RPC layer streams to it as the object receives it; the object stores the
 * body once complete (up to `cache.maxEntryBytes`, in chunks) and keeps the lease until then.
 *
 * The key's backoff (core/guard/key-backoff.ts) is kept in the same storage: one record for
 * the whole deployment, which survives eviction. An alarm deletes entries past their
 * `deleteAt` and backoff records past their `forgetAt`.
 *
 * Every distinct URL ever asked for has an object: once its key keeps nothing (no entry, no
 * backoff, no lease; after the alarm, or a flight that stored nothing) the object drops its
 * whole storage ({@link freeIfIdle}), tables and alarm included. Empty tables alone kept
 * ~12-24 KB per URL, billed monthly, forever: an attacker's million distinct URLs, ~20 GB.
 *
 * @example
 * const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(request.primary));
 * const result = await stub.fill(request);
 */
export class KeyCoordinatorObject extends DurableObject<CoordinatorEnv> {
  private parts: Parts | undefined;
  private setup: Setup = {};
  /** fill and invalidate calls running: storage is never dropped under one. */
  private calls = 0;
  /** A {@link freeIfIdle} came while a call ran: the last call to end asks again. */
  private freeWanted = false;
  /** When this instance last dropped its storage. */
  private freedAt: number | undefined;
  /** Background refreshes started by the filler; kept so the object has work pending. */
  private readonly pending = new BackgroundWork();
  /** The entry and lease writes that follow an origin answer, made after the answer left (see AfterAnswer). */
  private readonly later = new AfterAnswer((work) => this.keep(work));
  /** The alarm this instance set or read (null: none), so a fill does not read it again; undefined until known. */
  private alarmAt: number | null | undefined;

  /** The key's {@link KeyCoordinator.fill}, its large bodies streamed beside the answer (see fill-wire.ts). */
  async fill(request: FillRequest): Promise<WireFillResult> {
    return this.running(async () => {
      const { filler, store, backoff } = this.build();
      const result = await filler.fill(request);
      // The caller that wrote the entry schedules its cleanup (not each caller that joined it),
      // after answering: an alarm read and write need not delay the answer.
      if (result.kind === "entry" && result.stored && !result.collapsed)
        this.keep(this.scheduleCleanup(store, backoff));
      return toWire(result);
    });
  }

  /**
   * RFC 9111 §4.4: an unsafe request to this object's URL succeeded. The object holds one
   * primary key and its variants only, so every variant goes, not just the writer's. The
   * write is noted in memory, which keeps a fill already running here from storing what it was
   * answered before it (lookup.ts writtenWhileAsked), and a mark is left under the primary
   * key, which an edge copying a streamed body reads (lookup.ts invalidatedWhileAsked).
   */
  async invalidate(primary: string, headers: [string, string][]): Promise<void> {
    await this.running(async () => {
      this.later.flush();
      const { filler, store, backoff } = this.build();
      store.deleteAll();
      await filler.invalidate(primary, headers);
      this.keep(this.scheduleCleanup(store, backoff));
    });
  }

  /** Deletes expired entries, then sleeps until the next one expires, or frees the storage if none is left. */
  override async alarm(): Promise<void> {
    this.later.flush();
    this.alarmAt = null;
    const { store, backoff, clock } = this.build();
    store.deleteExpired();
    backoff.deleteForgotten();
    const next = nextCleanup(store, backoff);
    // Never a tight loop, whatever the clock says.
    if (next !== undefined) await this.setAlarm(alarmAt(Math.max(next, clock.now() + 1_000), clock.now()));
    else await this.freeIfIdle();
  }

  /**
   * Test seam, reached through `runInDurableObject` (symbol-keyed, so not exposed over RPC;
   * a Clock could not cross it anyway). An evicted object comes back with the defaults.
   */
  [coordinatorTestHooks](): CoordinatorTestHooks {
    return {
      use: (options) => {
        this.later.flush();
        this.setup = options;
        this.parts = this.assemble();
      },
      settled: () => this.pending.settled(),
    };
  }

  private build(): Parts {
    this.parts ??= this.assemble();
    return this.parts;
  }

  private assemble(): Parts {
    const { clock = systemClock, config = configFromEnv(this.env), guardName } = this.setup;
    // Every part makes its tables through this one list, read once per instance.
    const tables = SqlTables.ofObject(this.ctx.storage);
    const stored = new DurableObjectStore(this.ctx.storage, clock, {
      maxBodyBytes: config.cache.maxEntryBytes,
      tables,
    });
    // In the key's own object, so the backoff holds in every data center and outlives eviction.
    const backoff = new DurableObjectBackoffStore(this.ctx.storage, clock, tables);
    // After each release: a flight that stored nothing may have left the key with nothing.
    const leases = new WriteBehindLeases(new StorageLeaseManager(this.ctx.storage, clock, tables), this.later, () =>
      this.keep(this.freeIfIdle()),
    );
    const filler = new KeyCoordinator({
      config,
      clock,
      store: new WriteBehindStore(stored, this.later),
      leases,
      backoff: {
        get: (key) => backoff.get(key),
        delete: (key) => backoff.delete(key),
        // A key that failed keeps a record until its forgetAt: the alarm removes it then.
        set: async (key, record) => {
          await backoff.set(key, record);
          this.keep(this.scheduleCleanup(stored, backoff));
        },
      },
      guard: deploymentGuard(this.env.GUARD, config, guardFrontFor(clock, config, guardName), guardName, (work) =>
        this.keep(work),
      ),
      // The lease's write was deferred past the guard's call: it is made (and, by the output
      // gate, committed) before the origin is asked. See WriteBehindLeases.
      fetch: (url, init) => {
        this.later.flush();
        return originFetch(url, init);
      },
      decodes: workerdDecoding,
      // The fills of every data center are made here: their failures are logged here.
      onOriginCall: logFailedOriginCall,
      background: (work) => this.keep(work),
      // A streamed body is stored after fill() returned: schedule its cleanup then.
      onStored: () => this.keep(this.scheduleCleanup(stored, backoff)),
    });
    return { tables, filler, store: stored, backoff, leases, clock };
  }

  /** Runs a call of the object's RPC, counted in {@link calls}. */
  private async running<T>(call: () => Promise<T>): Promise<T> {
    this.calls++;
    try {
      return await call();
    } finally {
      if (--this.calls === 0 && this.freeWanted) {
        this.freeWanted = false;
        this.keep(this.freeIfIdle());
      }
    }
  }

  /**
   * Drops the object's whole storage (`deleteAll`: its tables, and with a compatibility date
   * from 2026-02-24 its alarm) once the key keeps nothing: no entry or invalidation mark, no
   * backoff record, no lease out or live, and the clock past the last fencing token (so a
   * token issued after is still above it). The parts are built anew on the next call, as in
   * a new object: their lists of tables said tables that are gone. Asked after the writes
   * that follow the answer, never while a call runs here.
   *
   * A key whose storage went and came back within {@link REFREE_AFTER_MS} (a page answered
   * `no-store` again and again: each fill makes the lease table anew, 3 rows written) is
   * freed by an alarm then instead: at most once per that time while its traffic lasts,
   * where every fill would have paid for the table. A key seen once is freed at once.
   */
  private async freeIfIdle(): Promise<void> {
    await new Promise<void>((resolve) => this.later.defer(resolve));
    if (this.calls > 0) {
      this.freeWanted = true;
      return;
    }
    const parts = this.parts;
    // No table, nothing stored (an alarm is only ever set beside an entry or a record): a refused miss's object.
    if (!parts || parts.tables.none() || nextCleanup(parts.store, parts.backoff) !== undefined) return;
    const quietFrom = parts.leases.quietFrom();
    if (quietFrom === undefined) return;
    const now = parts.clock.now();
    // Tokens issued ahead of the clock (a burst), or a dead holder's live lease: look again then.
    if (quietFrom > now) return this.wakeBy(alarmAt(Math.max(quietFrom, now + 1_000), now));
    if (this.freedAt !== undefined && now < this.freedAt + REFREE_AFTER_MS)
      return this.wakeBy(this.freedAt + REFREE_AFTER_MS);
    this.freedAt = now;
    const deleted = this.ctx.storage.deleteAll();
    this.parts = undefined;
    this.alarmAt = null;
    await deleted;
  }

  private keep(work: Promise<unknown>): void {
    this.ctx.waitUntil(this.pending.add(work));
  }

  /**
   * Sets the cleanup alarm for the earliest expiry, once the writes that follow the answer
   * are made (a write now would hold the answer, see AfterAnswer). The alarm is read once
   * per instance, not once per fill.
   */
  private async scheduleCleanup(store: DurableObjectStore, backoff: DurableObjectBackoffStore): Promise<void> {
    await new Promise<void>((resolve) => this.later.defer(resolve));
    const next = nextCleanup(store, backoff);
    if (next !== undefined) await this.wakeBy(alarmAt(next, this.build().clock.now()));
  }

  /** Sets the alarm for `at` unless one is due before. The alarm is read once per instance. */
  private async wakeBy(at: number): Promise<void> {
    this.alarmAt ??= await this.ctx.storage.getAlarm();
    if (this.alarmAt === null || this.alarmAt > at) await this.setAlarm(at);
  }

  private async setAlarm(at: number): Promise<void> {
    this.alarmAt = at;
    await this.ctx.storage.setAlarm(at);
  }
}

/** How soon a key's object drops its storage again after it did (see freeIfIdle). */
const REFREE_AFTER_MS = 60_000;

/** The next instant the object has something to delete: an entry past its deleteAt, a forgotten backoff. */
function nextCleanup(store: DurableObjectStore, backoff: DurableObjectBackoffStore): number | undefined {
  const at = [store.nextDeleteAt(), backoff.nextForgetAt()].filter((t) => t !== undefined);
  return at.length > 0 ? Math.min(...at) : undefined;
}

/**
 * An alarm instant workerd accepts: it throws on dates after 2189, and an entry's deleteAt
 * is whatever the origin's Expires made it (an entry stored before lifetimes were capped may
 * say 2286). No entry outlives MAX_LIFETIME_MS, so waking then loses nothing.
 */
function alarmAt(at: number, now: number): number {
  return Math.min(at, now + MAX_LIFETIME_MS);
}
