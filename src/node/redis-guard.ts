import { randomUUID } from "node:crypto";
import { closedBreaker, type BreakerRecord } from "../core/guard/breaker.ts";
import type { Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import { HerdlessError } from "../core/errors.ts";
import { realTimers, type Timers } from "../core/guard/local-guard.ts";
import type { GuardSnapshot, OriginGuard, OriginOutcome, OriginPermit, Priority } from "../core/guard/origin-guard.ts";
import { checkPrefix, type RedisConnection } from "./redis-connection.ts";
import { ACQUIRE, RELEASE } from "./redis-guard-scripts.ts";

/** Poll backoff while every slot is taken; a release in this process wakes the poller at once. */
const MIN_POLL_MS = 2;
const MAX_POLL_MS = 25;

export interface RedisGuardOptions {
  connection: RedisConnection;
  config: Config;
  /** `now` for permit expiry and the breaker is read here and passed into the scripts. */
  clock: Clock;
  /** Serves while Redis is unreachable: its own cap, queue and breaker, for this process only. */
  fallback: OriginGuard;
  /** Namespace shared with the store and leases of the same deployment. Default "herdless:". */
  prefix?: string;
  /** A permit whose holder dies frees its slot after this long. Default origin.timeoutMs + 5 s. */
  permitTtlMs?: number;
  timers?: Timers;
  /** Hears every change of {@link RedisGuard.degraded}, with the failure behind it. */
  onDegradedChange?: (degraded: boolean, cause: unknown) => void;
}

interface Waiter {
  priority: Priority;
  signal: AbortSignal | undefined;
  resolve: (permit: OriginPermit | Promise<OriginPermit>) => void;
  reject: (error: unknown) => void;
  timer: unknown;
  settled: boolean;
  detach: () => void;
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
 * - Redis unreachable: calls go to `fallback` (a LocalGuard) and `degraded` turns true;
 *   once the connection is healthy again calls go back to Redis. During the switch the two
 *   may briefly admit more than the cap together; a permit released while Redis is down
 *   frees its slot by its TTL and its outcome is not counted.
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

  constructor(private readonly o: RedisGuardOptions) {
    // One hash tag for every guard key: the scripts move permits and breaker together.
    const prefix = checkPrefix(o.prefix ?? "herdless:");
    this.permitsKey = `${prefix}{guard}:permits`;
    this.breakerKey = `${prefix}{guard}:breaker`;
    this.timers = o.timers ?? realTimers;
    this.permitTtlMs = o.permitTtlMs ?? o.config.origin.timeoutMs + 5_000;
    this.unsubscribe = o.connection.onHealthChange((healthy) =>
      this.setDegraded(!healthy, healthy ? undefined : o.connection.lastError),
    );
  }

  /** True while calls are served by the local fallback because Redis is unreachable. */
  get degraded(): boolean {
    return this.isDegraded;
  }

  async acquire(priority: Priority, signal?: AbortSignal): Promise<OriginPermit> {
    if (signal?.aborted) throw signal.reason;
    if (!this.o.connection.healthy) {
      this.setDegraded(true, this.o.connection.lastError);
      return this.o.fallback.acquire(priority, signal);
    }
    const noneAhead = this.foreground.length === 0 && (priority === "foreground" || this.background.length === 0);
    if (noneAhead) {
      let attempt: Attempt;
      try {
        attempt = await this.attempt(priority);
      } catch (cause) {
        this.setDegraded(true, cause);
        return this.o.fallback.acquire(priority, signal);
      }
      if (attempt.kind === "granted") return this.permit(attempt.id, attempt.probe);
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
    if (!this.o.connection.healthy) return this.o.fallback.snapshot();
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
    this.setDegraded(false, undefined);
    const [code, retryAfterMs] = Array.isArray(reply) ? reply.map(Number) : [];
    if (code === 1 || code === 2) return { kind: "granted", id, probe: code === 2 };
    if (code === -1) return { kind: "refused", retryAfterMs: retryAfterMs ?? 0 };
    return { kind: "busy" };
  }

  private permit(id: string, probe: boolean): OriginPermit {
    let released = false;
    return {
      release: async (outcome: OriginOutcome) => {
        if (released) return;
        released = true;
        const { failureThreshold, probeIntervalMs } = this.o.config.breaker;
        try {
          await this.o.connection.run("guard release", (client) =>
            RELEASE.run(
              client,
              [this.permitsKey, this.breakerKey],
              [id, outcome, probe ? "1" : "0", this.o.clock.now(), failureThreshold, probeIntervalMs],
            ),
          );
        } catch (cause) {
          this.setDegraded(true, cause);
        }
        this.wake?.();
      },
    };
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
        if (this.settle(head)) head.resolve(this.permit(attempt.id, attempt.probe));
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
    for (const waiter of this.drain()) waiter.resolve(this.o.fallback.acquire(waiter.priority, waiter.signal));
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
    const parsed = JSON.parse(raw) as BreakerRecord;
    return parsed.v === 1 ? parsed : closedBreaker();
  } catch {
    return closedBreaker();
  }
}
