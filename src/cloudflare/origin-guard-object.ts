import { DurableObject } from "cloudflare:workers";
import { closedBreaker, mustSave, parseBreakerRecord, type BreakerRecord } from "../core/guard/breaker.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import { isHerdlessError } from "../core/errors.ts";
import { isGuardRefusal, type GuardRefusal } from "../core/origin/guarded-call.ts";
import { LocalGuard, type LocalPermit } from "../core/guard/local-guard.ts";
import type { GuardSnapshot, OriginOutcome, Priority } from "../core/guard/origin-guard.ts";
import { configFromEnv, type ConfigEnv } from "./config-env.ts";

/** The answer to {@link OriginGuardObject.acquire}: a permit, or why not and when to retry. */
export type GuardGrant =
  | {
      ok: true;
      permitId: string;
      probe: boolean;
      /** How long the permit holds without a {@link OriginGuardObject.renew}: origin.timeoutMs + {@link PERMIT_MARGIN_MS}. */
      leaseMs: number;
    }
  | { ok: false; code: GuardRefusal; message: string; retryAfterMs: number };

/** A permit whose holder never releases nor renews it frees its slot this long after origin.timeoutMs (as RedisGuard's permits). */
export const PERMIT_MARGIN_MS = 5_000;

/**
 * How long a permit holds from its grant or its last renewal. Not the route's timeoutMs: its
 * holder renews it every third of this while the call runs, a long poll included.
 */
function permitLeaseMs(config: Config): number {
  return config.origin.timeoutMs + PERMIT_MARGIN_MS;
}

/**
 * Test-only hooks, reached through `runInDurableObject` (symbol-keyed methods are not
 * exposed over RPC, so no Worker can call them). `config` replaces HERDLESS_CONFIG and
 * rebuilds the guard from storage, as a restart would; call it before any traffic.
 */
export const guardTestHooks: unique symbol = Symbol("herdless.guardTestHooks");
export interface GuardTestHooks {
  clock?: Clock;
  config?: Config;
}

interface Held {
  permit: LocalPermit;
  expiresAt: number;
}

interface GuardState {
  config: Config;
  guard: LocalGuard;
  held: Map<string, Held>;
}

/**
 * The deployment-wide origin guard (`env.GUARD.idFromName("global")`): the cap, queue and
 * breaker of {@link LocalGuard} for every key in every data center. Callers wait inside
 * the object (at most `origin.queueTimeoutMs`); a waiting call holds no input gate, so
 * others keep being served.
 *
 * - Permits are leases: each gets an id and expires `origin.timeoutMs` + {@link PERMIT_MARGIN_MS}
 *   after the grant or its holder's last {@link renew} (a holder renews while its call, a
 *   streamed body included, runs; so only a dead or cut-off holder reaches it). Expired permits are reclaimed on every call and by an alarm, uncounted by
 *   the breaker (a dead coordinator says nothing about the origin); releasing an unknown
 *   or expired id is a no-op.
 * - Persisted (SQLite, written synchronously, so the output gate holds each answer until
 *   the write is durable): the breaker record, so a reset object keeps the breaker open
 *   (each failure and transition; a success only when it starts a slice of the window, see
 *   {@link mustSave});
 *   and live permits (id, probe, expiry), so a reset object re-occupies their slots until
 *   they are released or expire and the cap holds while their holders still call the origin.
 * - The queue lives in memory only: a reset fails its waiters, whose edges see
 *   COORDINATOR_UNAVAILABLE and fall back.
 *
 * @example
 * const grant = await env.GUARD.get(env.GUARD.idFromName("global")).acquire("foreground");
 * if (grant.ok) { try { ... } finally { await stub.release(grant.permitId, "success"); } }
 */
export class OriginGuardObject extends DurableObject<ConfigEnv> {
  private clock: Clock = systemClock;
  private configOverride: Config | undefined;
  private current: GuardState | undefined;
  /** The breaker record as storage holds it (read or last written). */
  private savedBreaker: BreakerRecord | undefined;
  /** Wall-clock time of the scheduled alarm, if this instance set one. */
  private alarmAt: number | undefined;
  /** The callers waiting in the queue that may withdraw (acquire's `waiterId`), by id. */
  private readonly waiters = new Map<string, AbortController>();
  /** Permit calls this instance answered (acquire, renew, release, abandon): the scale simulation holds them to the model. */
  permitCalls = 0;

  constructor(ctx: DurableObjectState, env: ConfigEnv) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS herdless_guard_breaker (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL)",
    );
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS herdless_guard_permits (id TEXT PRIMARY KEY, probe INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
    );
  }

  /**
   * Waits for a permit (bounded by origin.queueTimeoutMs; `ifFree`: not at all); refusals are
   * answers, not errors. `waiterId`: the caller may withdraw the wait ({@link withdraw}).
   */
  async acquire(priority: Priority, ifFree = false, waiterId?: string): Promise<GuardGrant> {
    this.permitCalls++;
    const state = this.state();
    this.reclaim(state);
    const withdrawal = typeof waiterId === "string" ? new AbortController() : undefined;
    if (waiterId !== undefined && withdrawal) this.waiters.set(waiterId, withdrawal);
    let permit: LocalPermit;
    try {
      const asked = priority === "background" ? "background" : "foreground";
      permit = await state.guard.acquire(asked, withdrawal?.signal, ifFree === true);
    } catch (error) {
      if (isHerdlessError(error) && isGuardRefusal(error.code))
        return { ok: false, code: error.code, message: error.message, retryAfterMs: error.retryAfterMs ?? 1_000 };
      if (withdrawal?.signal.aborted)
        return { ok: false, code: "QUEUE_TIMEOUT", message: "withdrawn by its caller", retryAfterMs: 1_000 };
      throw error;
    } finally {
      if (waiterId !== undefined) this.waiters.delete(waiterId);
    }
    const permitId = crypto.randomUUID();
    const leaseMs = permitLeaseMs(state.config);
    const expiresAt = this.clock.now() + leaseMs;
    state.held.set(permitId, { permit, expiresAt });
    this.ctx.storage.sql.exec(
      "INSERT INTO herdless_guard_permits (id, probe, expires_at) VALUES (?, ?, ?)",
      permitId,
      permit.probe ? 1 : 0,
      expiresAt,
    );
    await this.scheduleAlarm(state);
    return { ok: true, permitId, probe: permit.probe, leaseMs };
  }

  /**
   * Extends a live permit by its lease from now: its holder's origin call (a streamed body
   * may run until origin.streamTimeoutMs) is still running. False for an unknown or expired
   * id: that slot may be someone else's already, and the holder must stop its call.
   */
  async renew(permitId: string): Promise<boolean> {
    this.permitCalls++;
    const state = this.state();
    this.reclaim(state);
    const held = state.held.get(permitId);
    if (!held) return false;
    held.expiresAt = this.clock.now() + permitLeaseMs(state.config);
    this.ctx.storage.sql.exec(
      "UPDATE herdless_guard_permits SET expires_at = ? WHERE id = ?",
      held.expiresAt,
      permitId,
    );
    return true;
  }

  /** Frees the permit and counts its outcome for the breaker; a no-op for an unknown or expired id. */
  async release(permitId: string, outcome: OriginOutcome, key?: string): Promise<void> {
    this.permitCalls++;
    this.take(permitId)?.release(outcome === "success" || outcome === "neutral" ? outcome : "failure", key);
  }

  /**
   * Takes a waiting caller out of the queue: its client left (a relay's request.signal), and a
   * waiter nobody is left to answer held a place of `origin.maxQueue` until its turn came.
   */
  async withdraw(waiterId: string): Promise<void> {
    this.waiters.get(waiterId)?.abort(new Error("withdrawn by its caller"));
  }

  /** Frees the permit without counting an outcome (its caller gave up before calling the origin). */
  async abandon(permitId: string): Promise<void> {
    this.permitCalls++;
    this.take(permitId)?.abandon();
  }

  async snapshot(): Promise<GuardSnapshot> {
    const state = this.state();
    this.reclaim(state);
    return state.guard.snapshot();
  }

  override async alarm(): Promise<void> {
    this.alarmAt = undefined;
    const state = this.state();
    this.reclaim(state);
    await this.scheduleAlarm(state);
  }

  [guardTestHooks](hooks: GuardTestHooks): void {
    if (hooks.clock) this.clock = hooks.clock;
    if (hooks.config) {
      this.configOverride = hooks.config;
      this.current = undefined;
    }
  }

  /** The guard, built on first use from the config and what storage kept across a restart. */
  private state(): GuardState {
    if (this.current) return this.current;
    const config = this.configOverride ?? configFromEnv(this.env);
    const guard = new LocalGuard({
      config,
      clock: { now: () => this.clock.now() },
      breaker: this.loadBreaker(),
      onBreakerChange: (record) => this.saveBreaker(record),
    });
    const held = new Map<string, Held>();
    const rows = this.ctx.storage.sql.exec<{ id: string; probe: number; expires_at: number }>(
      "SELECT id, probe, expires_at FROM herdless_guard_permits",
    );
    for (const row of rows) held.set(row.id, { permit: guard.adopt(row.probe === 1), expiresAt: row.expires_at });
    this.current = { config, guard, held };
    return this.current;
  }

  private take(permitId: string): LocalPermit | undefined {
    const state = this.state();
    this.reclaim(state);
    const held = state.held.get(permitId);
    if (!held) return undefined;
    state.held.delete(permitId);
    this.ctx.storage.sql.exec("DELETE FROM herdless_guard_permits WHERE id = ?", permitId);
    return held.permit;
  }

  private reclaim(state: GuardState): void {
    const now = this.clock.now();
    const expired = [...state.held].filter(([, held]) => now >= held.expiresAt);
    if (expired.length === 0) return;
    this.ctx.storage.sql.exec("DELETE FROM herdless_guard_permits WHERE expires_at <= ?", now);
    for (const [id, held] of expired) {
      state.held.delete(id);
      held.permit.abandon();
    }
  }

  /** An alarm at the earliest permit expiry, so queued callers get reclaimed slots with no new call arriving. */
  private async scheduleAlarm(state: GuardState): Promise<void> {
    let earliest = Infinity;
    for (const held of state.held.values()) earliest = Math.min(earliest, held.expiresAt);
    if (earliest === Infinity) return;
    // Storage alarms run on the wall clock; the guard's clock may be a test's.
    const at = Date.now() + Math.max(1, earliest - this.clock.now());
    if (this.alarmAt !== undefined && this.alarmAt <= at) return;
    this.alarmAt = at;
    await this.ctx.storage.setAlarm(at);
  }

  private loadBreaker(): BreakerRecord {
    this.savedBreaker = this.readBreaker();
    return this.savedBreaker;
  }

  private readBreaker(): BreakerRecord {
    const row = this.ctx.storage.sql
      .exec<{ record: string }>("SELECT record FROM herdless_guard_breaker WHERE id = 1")
      .toArray()[0];
    if (!row) return closedBreaker();
    try {
      return parseBreakerRecord(JSON.parse(row.record));
    } catch {
      return closedBreaker();
    }
  }

  /** Writes the record when it says something a reset must not lose ({@link mustSave}): not every success. */
  private saveBreaker(record: BreakerRecord): void {
    if (this.savedBreaker && !mustSave(this.savedBreaker, record)) return;
    this.savedBreaker = record;
    this.ctx.storage.sql.exec(
      "INSERT OR REPLACE INTO herdless_guard_breaker (id, record) VALUES (1, ?)",
      JSON.stringify(record),
    );
  }
}
