import { randomUUID } from "node:crypto";
import type { Clock } from "../../core/clock.ts";
import { longestOriginTimeoutMs, type Config } from "../../core/config.ts";
import {
  breakerSettings,
  realTimers,
  type LocalGuard,
  type LocalPermit,
  originBusy,
  queueWaitMs,
  type Timers,
} from "../../core/guard/local-guard.ts";
import type {
  GuardSnapshot,
  OriginGuard,
  OriginOutcome,
  OriginPermit,
  Priority,
} from "../../core/guard/origin-guard.ts";
import { checkPrefix, type RedisConnection } from "./connection.ts";
import { breakerOpen, type Call, MAX_POLL_MS, MIN_POLL_MS, PollPause, WaitQueue } from "./guard-queue.ts";
import { acquirePermit, readGuard, releasePermit, type Attempt } from "./guard-scripts.ts";
import { FleetEpoch, type GuardKeys } from "./guard-epoch.ts";
import { lossGraceMs, PermitRenewals } from "./guard-renewal.ts";
import { LocalShare } from "./guard-share.ts";

export interface RedisGuardOptions {
  connection: RedisConnection;
  config: Config;
  /** `now` for permit expiry and the breaker is read here and passed into the scripts. */
  clock: Clock;
  /**
   * Serves while Redis is unreachable: its own queue and breaker, for this process only,
   * with this process's share of the cap (see FleetMembers.share).
   */
  fallback: LocalGuard;
  /** Namespace shared with the store and leases of the same deployment. Default "herdless:". */
  prefix?: string;
  /** A permit whose holder dies frees its slot after this long (a live one renews it). Default origin.timeoutMs + 5 s. */
  permitTtlMs?: number;
  /** The longest a call runs, renewing its permit. Default the longest route timeoutMs (or origin.timeoutMs) + origin.streamTimeoutMs. */
  longestCallMs?: number;
  timers?: Timers;
  /**
   * After Redis returns, keep to the local share this long before admitting through Redis: by then
   * every process has noticed and registered its calls. Default 400 ms: 4 × the reconnect backoff cap.
   */
  rejoinAfterMs?: number;
  /** Hears every change of {@link RedisGuard.degraded}, with the failure behind it. */
  onDegradedChange?: (degraded: boolean, cause: unknown) => void;
  /**
   * Told when this process sees that Redis lost its data (guard-epoch.ts), with the end of the
   * wait for new permits (0: none): the fleet's leases re-assert the fills running here (lease.ts).
   */
  onDataLoss?: (graceUntil: number) => void | Promise<void>;
}

/**
 * The {@link OriginGuard} of a Node fleet sharing Redis: the cap, the queue and the breaker
 * of {@link LocalGuard}, deployment-wide.
 *
 * - Permits are leases: members of `${prefix}{guard}:permits` scored by expiry, renewed while
 *   their call runs (guard-renewal.ts); a dead holder's slot frees after `permitTtlMs`. A
 *   script drops expired ones, checks the count and the breaker, and adds one, atomically.
 *   Redis losing the set (FLUSHALL) is seen by `${prefix}{guard}:epoch` (guard-epoch.ts).
 * - Breaker: the BreakerRecord JSON of breaker.ts in `${prefix}{guard}:breaker`, moved by the
 *   same scripts, so exactly one probe per interval goes out across all processes.
 * - Queue: per process (`origin.maxQueue` bounds each process's queue, not the fleet's), FIFO,
 *   foreground first; one poller per process tries for the head waiter with a short backoff
 *   until `origin.queueTimeoutMs`. An `ifFree` call never queues (ORIGIN_BUSY).
 * - Background priority: a background call takes a slot only while fewer than `maxConcurrency
 *   - 1` are held (with maxConcurrency 1 it competes equally), and only when no foreground waits.
 * - Redis unreachable: calls go to `fallback`, a LocalGuard capped at this process's share of
 *   `maxConcurrency` ({@link LocalShare}), and `degraded` turns true. Redis back: every permit
 *   this process holds is written into the permit set first (a restarted Redis is empty), then,
 *   after `rejoinAfterMs` (for every process to register its own), calls go back to Redis.
 *
 * @example
 * const guard = new RedisGuard({ connection, config, clock: systemClock, fallback: new LocalGuard({ config, clock: systemClock }) });
 * const permit = await guard.acquire("foreground"); try { ... } finally { await permit.release("success"); }
 */
export class RedisGuard implements OriginGuard {
  /** The Redis keys (exposed for operators and tests). */
  readonly permitsKey: string;
  readonly breakerKey: string;
  private readonly keys: GuardKeys;
  private readonly epoch: FleetEpoch;
  private readonly renewals: PermitRenewals;
  private readonly queue: WaitQueue;
  private readonly share: LocalShare;
  /** Every permit id of this process starts with this. */
  private readonly owner = `${randomUUID()}:`;
  private readonly timers: Timers;
  private readonly permitTtlMs: number;
  private readonly unsubscribe: () => void;
  private permits = 0;
  private fleetRecoveredAt = 0; // the latest close of the fleet's breaker read here (0: none)
  private pumping = false;
  private readonly pause: PollPause;

  constructor(private readonly o: RedisGuardOptions) {
    // One hash tag for every guard key: the scripts move permits and breaker together.
    const prefix = checkPrefix(o.prefix ?? "herdless:");
    this.permitsKey = `${prefix}{guard}:permits`;
    this.breakerKey = `${prefix}{guard}:breaker`;
    this.keys = { permits: this.permitsKey, breaker: this.breakerKey, epoch: `${prefix}{guard}:epoch` };
    this.timers = o.timers ?? realTimers;
    this.pause = new PollPause(this.timers);
    this.permitTtlMs = o.permitTtlMs ?? o.config.origin.timeoutMs + 5_000;
    this.epoch = new FleetEpoch(lossGraceMs(this.permitTtlMs), o.onDataLoss, o.clock);
    const { connection, clock } = o;
    const { maxQueue, queueTimeoutMs, maxConcurrency } = o.config.origin;
    this.renewals = new PermitRenewals({
      ...{ connection, clock, keys: this.keys, epoch: this.epoch, ttlMs: this.permitTtlMs, timers: this.timers },
      ...{ maxConcurrency, inRedis: () => this.share.mode !== "local" && connection.healthy },
      onError: (cause) => this.share.degrade(cause),
    });
    this.queue = new WaitQueue({ maxQueue, queueTimeoutMs, timers: this.timers });
    this.share = new LocalShare({
      ...{ connection, keys: this.keys, epoch: this.epoch, fallback: o.fallback, clock, timers: this.timers },
      ...{ permitTtlMs: this.permitTtlMs, owner: this.owner, rejoinAfterMs: o.rejoinAfterMs ?? 400 },
      longestCallMs: o.longestCallMs ?? longestOriginTimeoutMs(o.config) + o.config.origin.streamTimeoutMs,
      onDegradedChange: o.onDegradedChange,
    });
    this.unsubscribe = o.connection.onHealthChange((healthy) => {
      if (healthy) void this.share.rejoin();
      else this.share.degrade(o.connection.lastError);
    });
  }

  /** True while calls are served by the local fallback because Redis is unreachable. */
  get degraded(): boolean {
    return this.share.degraded;
  }

  acquire(priority: Priority, signal?: AbortSignal, ifFree = false): Promise<OriginPermit> {
    return this.admit({ priority, signal, ifFree, budget: {} });
  }

  private async admit(call: Call): Promise<OriginPermit> {
    if (call.signal?.aborted) throw call.signal.reason;
    if (!this.o.connection.healthy) this.share.degrade(this.o.connection.lastError);
    else if (this.share.mode === "local" && this.epoch.keeps(this.o.clock.now())) void this.share.rejoin();
    if (this.share.mode === "local") return this.local(call);
    if (this.share.mode === "redis") return this.shared(call);
    const local = await this.o.fallback.acquire(call.priority, call.signal, call.ifFree, call.budget);
    // Queued for that slot until the rejoin ended (the mode is read anew)? Then Redis alone counts this call.
    const held = (this.share.mode as string) === "redis" ? void local.abandon() : local;
    return this.shared(call, held).catch((error: unknown) => {
      local.abandon();
      throw error;
    });
  }

  /** A permit from Redis (holding `local` too, while rejoining). */
  private async shared(call: Call, local?: LocalPermit): Promise<OriginPermit> {
    if (this.queue.noneAhead(call.priority)) {
      let attempt: Attempt;
      try {
        attempt = await this.attempt(call.priority);
      } catch (cause) {
        this.share.degrade(cause);
        return local ? this.localPermit(local) : this.local(call);
      }
      if (attempt.kind === "granted") return this.permit(attempt.id, attempt.probe, local);
      if (attempt.kind === "refused") throw breakerOpen(attempt.retryAfterMs);
    }
    if (call.ifFree) throw originBusy();
    const waitMs = queueWaitMs(call.budget, this.o.clock.now(), this.o.config.origin.queueTimeoutMs);
    const waiting = this.queue.wait(call, local, waitMs);
    void this.pump();
    return waiting;
  }

  /**
   * The fleet's breaker, or the fallback's while calls go there; `recoveredAt` is the latest
   * close seen in either (Redis is read whenever it answers): a process cut off when the fleet
   * recovered must still let its backed-off keys return (key-backoff.ts). It also starts the
   * way back to Redis, as an acquire does: a process whose keys all back off acquires nothing.
   */
  async snapshot(): Promise<GuardSnapshot> {
    const healthy = this.o.connection.healthy;
    const now = this.o.clock.now();
    if (healthy && this.share.mode === "local" && this.epoch.keeps(now)) void this.share.rejoin();
    const fleet = healthy
      ? await this.o.connection
          .run("guard snapshot", (client) => readGuard(client, this.keys, now))
          .catch((cause: unknown) => void this.share.degrade(cause))
      : undefined;
    this.fleetRecoveredAt = Math.max(this.fleetRecoveredAt, fleet?.recoveredAt ?? 0);
    const shared = fleet && this.share.mode !== "local";
    const state = shared ? { ...fleet, queued: this.queue.size } : await this.o.fallback.snapshot();
    const recoveredAt = Math.max(this.fleetRecoveredAt, state.recoveredAt ?? 0);
    return { ...state, ...(recoveredAt > 0 ? { recoveredAt } : {}) };
  }

  /** Looks now whether Redis lost its data; settles once `onDataLoss` has, if this look saw it (lease.ts). */
  lookForLoss = (): Promise<void> => this.share.lookForLoss();

  /** Stops following the connection's health and frees the held-back slots. Queued callers still end by their timeout. */
  close(): void {
    this.unsubscribe();
    this.share.close();
  }

  private async attempt(priority: Priority): Promise<Attempt> {
    const now = this.o.clock.now();
    const { owner, epoch } = this;
    const permit = { owner, id: `${owner}${++this.permits}`, now, expiresAt: now + this.permitTtlMs, priority, epoch };
    const attempt = await this.o.connection
      .run("guard acquire", (c) => acquirePermit(c, this.keys, permit, this.o.config))
      .catch(this.share.unanswered(permit.id));
    this.share.observe(attempt.others);
    // Held back by a wait after a loss Redis keeps repeating: the share instead, as without Redis (guard-epoch.ts).
    if (attempt.kind === "busy" && !this.epoch.keeps(now)) throw this.epoch.unkept();
    return attempt;
  }

  /** A permit from the fallback, while Redis is away (or this process has not rejoined yet). */
  private async local(call: Call): Promise<OriginPermit> {
    const local = await this.o.fallback.acquire(call.priority, call.signal, call.ifFree, call.budget);
    if (this.share.mode !== "local") {
      // Queued here until after Redis returned: Redis must count this call too (in what is left of its queue time).
      local.abandon();
      return this.admit(call);
    }
    return this.localPermit(local);
  }

  private localPermit = (local: LocalPermit): OriginPermit =>
    this.permit(`${this.owner}${++this.permits}`, false, local);

  /**
   * The permit handed to the caller, renewed while it is held. Its release frees its fallback
   * slot (if any) and, while Redis is reachable, its entry in the permit set, counting the
   * outcome in the shared breaker (while Redis is down the entry lapses by its TTL). A plain
   * success is sent, not awaited; a failure or a probe's outcome is counted before the next permit.
   */
  private permit(id: string, probe: boolean, local?: LocalPermit, waited = false): OriginPermit {
    this.share.held.set(id, { probe, local });
    let released = false;
    return {
      lost: this.renewals.hold(id),
      ...(waited ? { waited } : {}),
      release: async (outcome: OriginOutcome, key = "") => {
        if (released) return;
        released = true;
        this.renewals.drop(id);
        this.share.held.get(id)?.local?.release(outcome, key);
        this.share.held.delete(id);
        if (this.o.connection.healthy) {
          const release = { id, outcome, key, now: this.o.clock.now(), settings: breakerSettings(this.o.config) };
          const handedBack = this.o.connection
            .run("guard release", (client) => releasePermit(client, this.keys, release))
            .catch((cause: unknown) => this.share.unheard(id, cause));
          if (outcome !== "success" || probe) await handedBack;
        } else this.share.unheard(id);
        this.pause.wake();
      },
    };
  }

  /** One poller per process, for the head waiter: foreground first, then background, FIFO. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    let pollMs = MIN_POLL_MS;
    try {
      for (let head = this.queue.head(); head; head = this.queue.head()) {
        let attempt: Attempt;
        try {
          attempt = await this.attempt(head.priority);
        } catch (cause) {
          this.share.degrade(cause);
          return this.handOverToFallback();
        }
        if (attempt.kind === "refused") return this.queue.rejectAll(breakerOpen(attempt.retryAfterMs));
        if (attempt.kind === "busy") {
          await this.pause.sleep(pollMs * (0.5 + Math.random() / 2));
          pollMs = Math.min(MAX_POLL_MS, pollMs * 2);
          continue;
        }
        pollMs = MIN_POLL_MS;
        // The head timed out or was aborted meanwhile: give the slot back (a probe's leaves the breaker half-open until it lapses).
        if (this.queue.settle(head)) head.resolve(this.permit(attempt.id, attempt.probe, head.local, true));
        else
          await this.o.connection
            .run("guard abandon", (client) => client.zrem(this.permitsKey, attempt.id))
            .catch(() => undefined);
      }
    } finally {
      this.pumping = false;
    }
  }

  private handOverToFallback(): void {
    for (const waiter of this.queue.drain())
      waiter.resolve(waiter.local ? this.localPermit(waiter.local) : this.local(waiter));
  }
}
