import { HerdlessError } from "../../core/errors.ts";
import type { LocalPermit, QueueBudget, Timers } from "../../core/guard/local-guard.ts";
import type { OriginPermit, Priority } from "../../core/guard/origin-guard.ts";

/** Poll backoff while every slot is taken; a release in this process wakes the poller at once. */
export const MIN_POLL_MS = 2;
export const MAX_POLL_MS = 25;

/**
 * One acquire of RedisGuard: `budget` is its time in queues, one deadline however often it changes
 * queue (Redis dropping, then returning), so it waits `origin.queueTimeoutMs` in all, not in each.
 */
export interface Call {
  readonly priority: Priority;
  readonly signal: AbortSignal | undefined;
  readonly ifFree: boolean;
  readonly budget: QueueBudget;
}

/** A caller of this process waiting for a fleet slot. */
export interface Waiter extends Call {
  /** The fallback slot already taken, while rejoining (a permit then needs both). */
  readonly local: LocalPermit | undefined;
  /** Hands the caller its permit; call only after {@link WaitQueue.settle} returned true. */
  readonly resolve: (permit: OriginPermit | Promise<OriginPermit>) => void;
  readonly reject: (error: unknown) => void;
}

interface Entry extends Waiter {
  timer: unknown;
  settled: boolean;
  detach: () => void;
}

export interface WaitQueueOptions {
  /** Waiters at most (`origin.maxQueue`, per process). */
  maxQueue: number;
  /** A caller's time in queues at most, in all (`origin.queueTimeoutMs`), named in its QUEUE_TIMEOUT. */
  queueTimeoutMs: number;
  timers: Timers;
}

/**
 * The callers of one process waiting for a slot of the fleet's cap: foreground first, then
 * background, FIFO within each. A waiter leaves when it is settled (granted, or failed by
 * the guard), at its queue timeout, or when its signal aborts; whoever settles it first wins.
 *
 * @example
 * const queue = new WaitQueue({ maxQueue: 100, queueTimeoutMs: 5_000, timers: realTimers });
 * const permit = queue.wait({ priority: "foreground", signal, ifFree: false, budget: {} }, undefined, 5_000); // settled by the guard's poller
 * const head = queue.head(); if (head && queue.settle(head)) head.resolve(grantedPermit);
 */
export class WaitQueue {
  private readonly foreground: Entry[] = [];
  private readonly background: Entry[] = [];

  constructor(private readonly o: WaitQueueOptions) {}

  get size(): number {
    return this.foreground.length + this.background.length;
  }

  /** True when no waiter would go before a new caller of `priority`: it may try for a slot at once. */
  noneAhead(priority: Priority): boolean {
    return this.foreground.length === 0 && (priority === "foreground" || this.background.length === 0);
  }

  /**
   * Queues a caller: QUEUE_FULL at once past `maxQueue`, QUEUE_TIMEOUT after `waitMs` (what is
   * left of its `queueTimeoutMs`, as queueWaitMs reckons it from `budget`).
   */
  wait(call: Call, local: LocalPermit | undefined, waitMs: number): Promise<OriginPermit> {
    const { priority, signal } = call;
    const { maxQueue, queueTimeoutMs } = this.o;
    if (this.size >= maxQueue) {
      return Promise.reject(
        new HerdlessError("QUEUE_FULL", `origin queue is full (${maxQueue} waiting in this process)`, {
          retryAfterMs: 1_000,
        }),
      );
    }
    return new Promise<OriginPermit>((resolve, reject) => {
      const onAbort = () => {
        if (this.settle(entry)) reject(signal?.reason);
      };
      const entry: Entry = {
        ...call,
        local,
        resolve,
        reject,
        settled: false,
        timer: this.o.timers.setTimeout(() => {
          if (this.settle(entry))
            reject(
              new HerdlessError("QUEUE_TIMEOUT", `no origin slot within ${queueTimeoutMs} ms`, { retryAfterMs: 1_000 }),
            );
        }, waitMs),
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      (priority === "foreground" ? this.foreground : this.background).push(entry);
    });
  }

  /** The waiter served next: the oldest foreground one, else the oldest background one. */
  head(): Waiter | undefined {
    return this.foreground[0] ?? this.background[0];
  }

  /** Takes a waiter out of the queue; false if it already ended (granted, timed out, aborted). */
  settle(waiter: Waiter): boolean {
    const entry = waiter as Entry;
    if (entry.settled) return false;
    entry.settled = true;
    const queue = entry.priority === "foreground" ? this.foreground : this.background;
    queue.splice(queue.indexOf(entry), 1);
    this.o.timers.clearTimeout(entry.timer);
    entry.detach();
    return true;
  }

  /** Fails every waiter: the breaker opened, and queued callers learn at once rather than at their timeout. */
  rejectAll(error: unknown): void {
    for (const waiter of this.drain()) waiter.reject(error);
  }

  /** Takes every waiter out, in the order they would have been served. */
  drain(): Waiter[] {
    return [...this.foreground, ...this.background].filter((waiter) => this.settle(waiter));
  }
}

/** The poller's pause between tries while every slot is taken, cut short by {@link wake} (a release in this process). */
export class PollPause {
  private wakeUp: (() => void) | undefined;
  constructor(private readonly timers: Timers) {}

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.timers.clearTimeout(handle);
        this.wakeUp = undefined;
        resolve();
      };
      const handle = this.timers.setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  wake(): void {
    this.wakeUp?.();
  }
}

/** The refusal of an open breaker, for a caller and for every waiter when it opens. */
export function breakerOpen(retryAfterMs: number): HerdlessError {
  return new HerdlessError("BREAKER_OPEN", "origin circuit breaker is open", {
    retryAfterMs: Math.max(1_000, retryAfterMs),
  });
}
