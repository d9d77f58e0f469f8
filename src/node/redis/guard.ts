import { randomUUID } from "node:crypto";
import { closedBreaker, keyTag, parseBreakerRecord, type BreakerRecord } from "../../core/guard/breaker.ts";
import type { Clock } from "../../core/clock.ts";
import type { Config } from "../../core/config.ts";
import { HerdlessError } from "../../core/errors.ts";
import {
  breakerSettings,
  realTimers,
  type LocalGuard,
  type LocalPermit,
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
import { ACQUIRE, RELEASE } from "./guard-scripts.ts";

/** Poll backoff while every slot is taken; a release in this process wakes the poller at once. */
const MIN_POLL_MS = 2;
const MAX_POLL_MS = 25;

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
  /** A permit whose holder dies frees its slot after this long. Default origin.timeoutMs + 5 s. */
  permitTtlMs?: number;
  timers?: Timers;
  /**
   * After Redis returns, keep to the local share this long before admitting through Redis:
   * by then every process has noticed the return and registered the calls it made without
   * Redis. Default 1500 ms: past the connection's reconnect backoff cap (1 s), with a margin.
   */
  rejoinAfterMs?: number;
  /** Hears every change of {@link RedisGuard.degraded}, with the failure behind it. */
  onDegradedChange?: (degraded: boolean, cause: unknown) => void;
}

interface Waiter {
  priority: Priority;
  /** The fallback slot already taken, while rejoining (a permit then needs both). */
  local: LocalPermit | undefined;
  signal: AbortSignal | undefined;
  resolve: (permit: OriginPermit | Promise<OriginPermit>) => void;
  reject: (error: unknown) => void;
  timer: unknown;
  settled: boolean;
  detach: () => void;
}

/** A permit this process holds: from Redis, or from the fallback while Redis was away. */
interface Held {
  probe: boolean;
  /** The fallback's slot: a local permit, or the slot a Redis permit takes when Redis goes away. */
  local?: LocalPermit;
}

type Attempt =
  { kind: "granted"; id: string; probe: boolean } | { kind: "busy" } | { kind: "refused"; retryAfterMs: number };

/**
 * The {@link OriginGuard} of a Node fleet sharing Redis: the cap, the queue and the breaker
 * of {@link LocalGuard}, deployment-wide.
 *
 * - Permits are leases: members of `${prefix}{guard}:permits` scored by expiry; a holder that
 *   dies frees its slot after `permitTtlMs`. Taking one is a script that drops expired
 *   members, checks the count and the breaker, and adds the permit, atomically.
 * - Breaker: the BreakerRecord JSON of breaker.ts in `${prefix}{guard}:breaker`, moved by the
 *   same scripts, so exactly one probe per interval goes out across all processes.
 * - Queue: waiters are kept per process (`origin.maxQueue` bounds each process's queue,
 *   not the fleet's) in FIFO order, foreground first; one poller per process tries for
 *   the head waiter with a short backoff until `origin.queueTimeoutMs`.
 * - Background priority: a background call takes a slot only while fewer than
 *   `maxConcurrency - 1` are held (one slot stays free for foreground misses; with
 *   maxConcurrency 1 background competes equally), and, locally, only when no foreground waits.
 * - Redis unreachable: calls go to `fallback`, a LocalGuard capped at this process's share
 *   of `maxConcurrency`, and `degraded` turns true. The permits taken from Redis and still
 *   held take fallback slots too, so the fleet stays under the cap through the switch.
 * - Redis back: every permit this process holds (from Redis or the fallback) is written
 *   into the permit set first (a restarted Redis is empty), then, after `rejoinAfterMs`
 *   (time for every process to register its own), calls go back to Redis.
 *
 * @example
 * const guard = new RedisGuard({ connection, config, clock: systemClock, fallback: new LocalGuard({ config, clock: systemClock }) });
 * const permit = await guard.acquire("foreground"); try { ... } finally { await permit.release("success"); }
 */
export class RedisGuard implements OriginGuard {
  /** The Redis keys (exposed for operators and tests). */
  readonly permitsKey: string;
  readonly breakerKey: string;
  private readonly foreground: Waiter[] = [];
  private readonly background: Waiter[] = [];
  private readonly instance = randomUUID();
  private readonly timers: Timers;
  private readonly permitTtlMs: number;
  private readonly unsubscribe: () => void;
  private permits = 0;
  private pumping = false;
  private wake: (() => void) | undefined;
  private isDegraded = false;
  /** Every permit this process holds, by id: what it writes back into Redis when Redis returns. */
  private readonly held = new Map<string, Held>();
  /**
   * `redis`: permits come from Redis. `local`: from the fallback (Redis unreachable).
   * `rejoining`: Redis is back and this process's permits are registered there, but other
   * processes may still admit on their local shares: a permit needs a fallback slot and a
   * Redis slot, so neither count is exceeded.
   */
  private mode: "redis" | "rejoining" | "local";
  private rejoining: Promise<void> | undefined;

  constructor(private readonly o: RedisGuardOptions) {
    // One hash tag for every guard key: the scripts move permits and breaker together.
    const prefix = checkPrefix(o.prefix ?? "herdless:");
    this.permitsKey = `${prefix}{guard}:permits`;
    this.breakerKey = `${prefix}{guard}:breaker`;
    this.timers = o.timers ?? realTimers;
    this.permitTtlMs = o.permitTtlMs ?? o.config.origin.timeoutMs + 5_000;
    this.mode = o.connection.healthy ? "redis" : "local";
    this.unsubscribe = o.connection.onHealthChange((healthy) => {
      if (healthy) void this.rejoin();
      else this.setDegraded(true, o.connection.lastError);
    });
  }

  /** True while calls are served by the local fallback because Redis is unreachable. */
  get degraded(): boolean {
    return this.isDegraded;
  }

  async acquire(priority: Priority, signal?: AbortSignal): Promise<OriginPermit> {
    if (signal?.aborted) throw signal.reason;
    if (!this.o.connection.healthy) this.setDegraded(true, this.o.connection.lastError);
    else if (this.mode === "local") void this.rejoin();
    if (this.mode === "local") return this.local(priority, signal);
    if (this.mode === "redis") return this.shared(priority, signal, undefined);
    const local = await this.o.fallback.acquire(priority, signal);
    return this.shared(priority, signal, local).catch((error: unknown) => {
      local.abandon();
      throw error;
    });
  }

  /** A permit from Redis (holding `local` too, while rejoining). */
  private async shared(priority: Priority, signal: AbortSignal | undefined, local: LocalPermit | undefined) {
    const noneAhead = this.foreground.length === 0 && (priority === "foreground" || this.background.length === 0);
    if (noneAhead) {
      let attempt: Attempt;
      try {
        attempt = await this.attempt(priority);
      } catch (cause) {
        this.setDegraded(true, cause);
        return local ? this.localPermit(local) : this.local(priority, signal);
      }
      if (attempt.kind === "granted") return this.permit(attempt.id, attempt.probe, local);
      if (attempt.kind === "refused") throw breakerOpen(attempt.retryAfterMs);
    }
    const { maxQueue, queueTimeoutMs } = this.o.config.origin;
    if (this.foreground.length + this.background.length >= maxQueue) {
      throw new HerdlessError("QUEUE_FULL", `origin queue is full (${maxQueue} waiting in this process)`, {
        retryAfterMs: 1_000,
      });
    }
    return new Promise<OriginPermit>((resolve, reject) => {
      const onAbort = () => {
        if (this.settle(waiter)) reject(signal?.reason);
      };
      const waiter: Waiter = {
        priority,
        local,
        signal,
        resolve,
        reject,
        settled: false,
        timer: this.timers.setTimeout(() => {
          if (this.settle(waiter))
            reject(
              new HerdlessError("QUEUE_TIMEOUT", `no origin slot within ${queueTimeoutMs} ms`, { retryAfterMs: 1_000 }),
            );
        }, queueTimeoutMs),
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      (priority === "foreground" ? this.foreground : this.background).push(waiter);
      void this.pump();
    });
  }

  async snapshot(): Promise<GuardSnapshot> {
    if (this.mode === "local" || !this.o.connection.healthy) return this.o.fallback.snapshot();
    try {
      const now = this.o.clock.now();
      const [inFlight, raw] = await this.o.connection.run("guard snapshot", (client) =>
        Promise.all([client.zcount(this.permitsKey, `(${now}`, "+inf"), client.get(this.breakerKey)]),
      );
      return { breaker: parseBreaker(raw).state, inFlight, queued: this.foreground.length + this.background.length };
    } catch (cause) {
      this.setDegraded(true, cause);
      return this.o.fallback.snapshot();
    }
  }

  /** Stops following the connection's health. Queued callers still end by their timeout. */
  close(): void {
    this.unsubscribe();
  }

  private async attempt(priority: Priority): Promise<Attempt> {
    const { maxConcurrency, timeoutMs } = this.o.config.origin;
    const limit = priority === "foreground" ? maxConcurrency : Math.max(1, maxConcurrency - 1);
    const now = this.o.clock.now();
    const id = `${this.instance}:${++this.permits}`;
    const reply = await this.o.connection.run("guard acquire", (client) =>
      ACQUIRE.run(
        client,
        [this.permitsKey, this.breakerKey],
        [now, id, now + this.permitTtlMs, limit, maxConcurrency, timeoutMs],
      ),
    );
    const [code, retryAfterMs] = Array.isArray(reply) ? reply.map(Number) : [];
    if (code === 1 || code === 2) return { kind: "granted", id, probe: code === 2 };
    if (code === -1) return { kind: "refused", retryAfterMs: retryAfterMs ?? 0 };
    return { kind: "busy" };
  }

  /** A permit from the fallback, while Redis is away (or this process has not rejoined yet). */
  private async local(priority: Priority, signal: AbortSignal | undefined): Promise<OriginPermit> {
    const local = await this.o.fallback.acquire(priority, signal);
    if (this.mode !== "local") {
      // Queued here until after Redis returned: Redis must count this call too.
      local.abandon();
      return this.acquire(priority, signal);
    }
    return this.localPermit(local);
  }

  private localPermit(local: LocalPermit): OriginPermit {
    return this.permit(`${this.instance}:${++this.permits}`, false, local);
  }

  /**
   * The permit handed to the caller. Its release frees the fallback slot it holds (if any)
   * and, while Redis is reachable, its entry in the permit set, counting the outcome in the
   * shared breaker; while Redis is down the entry lapses by its TTL.
   */
  private permit(id: string, probe: boolean, local?: LocalPermit): OriginPermit {
    this.held.set(id, { probe, local });
    let released = false;
    return {
      release: async (outcome: OriginOutcome, key = "") => {
        if (released) return;
        released = true;
        const held = this.held.get(id);
        this.held.delete(id);
        held?.local?.release(outcome, key);
        if (this.o.connection.healthy) {
          const b = breakerSettings(this.o.config);
          try {
            await this.o.connection.run("guard release", (client) =>
              RELEASE.run(
                client,
                [this.permitsKey, this.breakerKey],
                [
                  id,
                  outcome,
                  this.o.clock.now(),
                  b.failureThreshold,
                  b.failureRate,
                  b.minFailingKeys,
                  b.windowMs,
                  b.probeIntervalMs,
                  keyTag(key),
                ],
              ),
            );
          } catch (cause) {
            this.setDegraded(true, cause);
          }
        }
        this.wake?.();
      },
    };
  }

  /**
   * Back to Redis: write every held permit into the permit set (a restarted or failed-over
   * Redis may not have them), then for `rejoinAfterMs` (while the other processes notice
   * Redis is back) take a local slot and a Redis slot for each call, write again (local
   * permits granted while the first write was on its way), then admit through Redis alone.
   * One attempt at a time; after a failed one, the next waits a second.
   */
  private rejoin(): Promise<void> {
    if (this.mode !== "local") return Promise.resolve();
    if (this.rejoining) return this.rejoining;
    const register = () =>
      this.held.size === 0
        ? Promise.resolve(0)
        : this.o.connection.run("guard rejoin", (client) => {
            const expiresAt = this.o.clock.now() + this.permitTtlMs;
            return client.zadd(this.permitsKey, ...[...this.held.keys()].flatMap((id) => [expiresAt, id]));
          });
    const graceMs = this.o.rejoinAfterMs ?? 1_500;
    this.rejoining = register()
      .then(() => {
        if (this.mode === "local" && this.o.connection.healthy) this.mode = "rejoining";
      })
      .then(() => new Promise<void>((resolve) => this.timers.setTimeout(resolve, graceMs)))
      .then(register)
      .then(() => {
        if (this.mode !== "rejoining" || !this.o.connection.healthy) return;
        this.mode = "redis";
        this.setDegraded(false, undefined);
      })
      .then(
        () => (this.rejoining = undefined),
        (cause: unknown) => {
          this.setDegraded(true, cause);
          // The next attempt waits a second: calls meanwhile stay on the local share.
          this.timers.setTimeout(() => (this.rejoining = undefined), 1_000);
        },
      );
    return this.rejoining;
  }

  /** One poller per process, for the head waiter: foreground first, then background, FIFO. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    let pollMs = MIN_POLL_MS;
    try {
      for (let head = this.head(); head; head = this.head()) {
        let attempt: Attempt;
        try {
          attempt = await this.attempt(head.priority);
        } catch (cause) {
          this.setDegraded(true, cause);
          return this.handOverToFallback();
        }
        if (attempt.kind === "refused") return this.failAll(attempt.retryAfterMs);
        if (attempt.kind === "busy") {
          await this.sleep(pollMs * (0.5 + Math.random() / 2));
          pollMs = Math.min(MAX_POLL_MS, pollMs * 2);
          continue;
        }
        pollMs = MIN_POLL_MS;
        // The head timed out or was aborted while the script ran: give the slot back (a
        // probe given back leaves the breaker half-open until the probe lapses).
        if (this.settle(head)) head.resolve(this.permit(attempt.id, attempt.probe, head.local));
        else
          await this.o.connection
            .run("guard abandon", (client) => client.zrem(this.permitsKey, attempt.id))
            .catch(() => undefined);
      }
    } finally {
      this.pumping = false;
    }
  }

  private head(): Waiter | undefined {
    return this.foreground[0] ?? this.background[0];
  }

  /** Takes a waiter out of the queue; false if it already ended (granted, timed out, aborted). */
  private settle(waiter: Waiter): boolean {
    if (waiter.settled) return false;
    waiter.settled = true;
    const queue = waiter.priority === "foreground" ? this.foreground : this.background;
    queue.splice(queue.indexOf(waiter), 1);
    this.timers.clearTimeout(waiter.timer);
    waiter.detach();
    return true;
  }

  private drain(): Waiter[] {
    return [...this.foreground, ...this.background].filter((waiter) => this.settle(waiter));
  }

  /** The breaker opened: queued callers learn at once rather than at their timeout. */
  private failAll(retryAfterMs: number): void {
    for (const waiter of this.drain()) waiter.reject(breakerOpen(retryAfterMs));
  }

  private handOverToFallback(): void {
    for (const waiter of this.drain())
      waiter.resolve(waiter.local ? this.localPermit(waiter.local) : this.local(waiter.priority, waiter.signal));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.timers.clearTimeout(handle);
        this.wake = undefined;
        resolve();
      };
      const handle = this.timers.setTimeout(done, ms);
      this.wake = done;
    });
  }

  private setDegraded(degraded: boolean, cause: unknown): void {
    if (degraded) {
      this.mode = "local";
      // Calls admitted through Redis and still running count against the local share.
      for (const held of this.held.values()) held.local ??= this.o.fallback.adopt(false);
    }
    if (degraded === this.isDegraded) return;
    this.isDegraded = degraded;
    this.o.onDegradedChange?.(degraded, cause);
  }
}

function breakerOpen(retryAfterMs: number): HerdlessError {
  return new HerdlessError("BREAKER_OPEN", "origin circuit breaker is open", {
    retryAfterMs: Math.max(1_000, retryAfterMs),
  });
}

function parseBreaker(raw: string | null): BreakerRecord {
  if (raw === null) return closedBreaker();
  try {
    return parseBreakerRecord(JSON.parse(raw));
  } catch {
    return closedBreaker();
  }
}
