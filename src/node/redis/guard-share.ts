import type { Clock } from "../../core/clock.ts";
import type { LocalGuard, LocalPermit, Timers } from "../../core/guard/local-guard.ts";
import { mayHaveRun, type RedisConnection } from "./connection.ts";
import { lookAtEpoch, registerPermits, type FleetEpoch, type GuardKeys } from "./guard-epoch.ts";
import { othersPermits } from "./guard-scripts.ts";

/** How often a process with no call to the origin reads the permits of the others anew. */
const VIEW_REFRESH_MS = 1_000;

/** A permit this process holds: from Redis, or from the fallback while Redis was away. */
export interface Held {
  probe: boolean;
  /** The fallback's slot: a local permit, or the slot a Redis permit takes when Redis goes away. */
  local?: LocalPermit;
}

export interface LocalShareOptions {
  connection: RedisConnection;
  /** The fleet's permit set, where the permits held are written back when Redis returns, its epoch marker and its breaker. */
  keys: GuardKeys;
  /** The epoch this process last saw, kept current while it calls nobody. */
  epoch: FleetEpoch;
  /** The guard of this process's share of the cap (see FleetMembers.share). */
  fallback: LocalGuard;
  clock: Clock;
  timers: Timers;
  /** How long a permit granted through Redis counts there: its lease in the permit set. */
  permitTtlMs: number;
  /** How long a call granted through Redis may still run at the switch (its renewals keep its lease that long). */
  longestCallMs: number;
  /** The prefix of this process's permit ids. */
  owner: string;
  /** After Redis returns, how long a call needs a local slot as well as a Redis one. */
  rejoinAfterMs: number;
  onDegradedChange?: (degraded: boolean, cause: unknown) => void;
}

/**
 * The fleet guard's side without Redis: this process's share of `maxConcurrency`, so the
 * fleet together stays under the cap without talking, and the way back to Redis.
 *
 * At the switch to the share, origin calls granted through Redis still run:
 * - this process's own take slots of its share until they end (a process over its share
 *   admits nothing until it is under again);
 * - other processes may have been over their shares, using free slots of somebody's. Each
 *   process knows how many permits the others held when it last heard from Redis (every try
 *   for a slot reports it; a process that tried for none reads it every second). At the
 *   switch it holds that many of its free slots (at most all of them) as taken until a
 *   permit granted before the switch must have ended (`longestCallMs`: a permit is renewed
 *   while its call runs, a streamed body included), then widens
 *   to its share.
 *
 * With `o` the others' permits and `h` this process's at the switch, a process that admits
 * anything keeps to `share - o`, one that holds back all its free slots to `h`: whichever
 * processes admit, the sum stays within the cap. That is exact when the count is current,
 * as it is for every process that is calling the origin; an idle process's count is at most
 * a second old. A process whose count is 0 (alone, or the fleet was idle) keeps its whole share.
 *
 * @example
 * const share = new LocalShare({ connection, permitsKey, owner, fallback, clock, timers, permitTtlMs, longestCallMs, rejoinAfterMs });
 * connection.onHealthChange((up) => (up ? void share.rejoin() : share.degrade(connection.lastError)));
 */
export class LocalShare {
  /** Every permit this process holds, by id: what it writes back into Redis when Redis returns. */
  readonly held = new Map<string, Held>();
  /**
   * `redis`: permits come from Redis. `local`: from the fallback (Redis unreachable).
   * `rejoining`: Redis is back and this process's permits are registered there, but other
   * processes may still admit on their local shares: a permit needs a fallback slot and a
   * Redis slot, so neither count is exceeded.
   */
  private current: "redis" | "rejoining" | "local";
  private isDegraded = false;
  private closed = false;
  private rejoining: Promise<void> | undefined;
  /** The free slots held as taken at the switch, each with the timer that frees it. */
  private readonly reserved = new Map<LocalPermit, unknown>();
  /**
   * Permits released while Redis could not hear of it, with when: taken out of the permit set
   * when Redis answers again. Left there, each held a slot of the fleet's cap until its lease
   * ran out (`permitTtlMs`), though its call had ended. Forgotten once that lease is surely over.
   */
  private readonly unreleased = new Map<string, number>();
  /** Live permits of other processes, as Redis last reported them. */
  private others = 0;
  private observedAt = -Infinity;
  private observations = 0;
  private readonly refresher: ReturnType<typeof setInterval>;

  constructor(private readonly o: LocalShareOptions) {
    this.current = o.connection.healthy ? "redis" : "local";
    this.refresher = setInterval(() => void this.refresh(), VIEW_REFRESH_MS);
    this.refresher.unref();
    void this.refresh();
  }

  /** What a try for a slot reported: the permits other processes hold. */
  observe(others: number): void {
    this.others = others;
    this.observedAt = this.o.clock.now();
    this.observations++;
  }

  get mode(): "redis" | "rejoining" | "local" {
    return this.current;
  }

  /** True from the switch to the share until the fleet-wide cap applies again. */
  get degraded(): boolean {
    return this.isDegraded;
  }

  /** A permit released without Redis hearing of it (`cause`: the failure, which degrades to the share). */
  unheard(id: string, cause?: unknown): void {
    const now = this.o.clock.now();
    for (const [gone, at] of this.unreleased) if (now - at > this.o.permitTtlMs) this.unreleased.delete(gone);
    this.unreleased.set(id, now);
    if (cause !== undefined) this.degrade(cause);
  }

  /**
   * For a try for permit `id` that failed: one sent and not answered (a stalled Redis) is granted
   * when Redis resumes, to nobody, so it is taken out as a released permit is. Rethrows.
   */
  unanswered(id: string): (error: unknown) => never {
    return (error) => {
      if (mayHaveRun(error)) this.unheard(id);
      throw error;
    };
  }

  /** Redis is unreachable: admit within the share from now on. */
  degrade(cause: unknown): void {
    if (this.current !== "local") {
      this.current = "local";
      for (const permit of this.held.values()) permit.local ??= this.o.fallback.adopt(false);
      this.holdBackFree();
    }
    this.setDegraded(true, cause);
  }

  /**
   * Back to Redis: write every held permit into the permit set (a restarted or failed-over
   * Redis may not have them), then for `rejoinAfterMs` (while the other processes notice
   * Redis is back) take a local slot and a Redis slot for each call, write again (local
   * permits granted while the first write was on its way), then admit through Redis alone.
   * One attempt at a time; after a failed one, the next waits a second.
   */
  rejoin(): Promise<void> {
    if (this.current !== "local") return Promise.resolve();
    if (this.rejoining) return this.rejoining;
    const register = () => {
      const released = [...this.unreleased.keys()];
      return this.o.connection.run("guard rejoin", async (client) => {
        const expiresAt = this.o.clock.now() + this.o.permitTtlMs;
        await registerPermits(client, this.o.keys, this.o.epoch, { expiresAt, released, held: [...this.held.keys()] });
        for (const id of released) this.unreleased.delete(id);
      });
    };
    this.rejoining = register()
      .then(() => {
        if (this.current === "local" && this.o.connection.healthy) this.current = "rejoining";
      })
      .then(() => new Promise<void>((resolve) => this.o.timers.setTimeout(resolve, this.o.rejoinAfterMs)))
      .then(register)
      .then(() => {
        if (this.current !== "rejoining" || !this.o.connection.healthy) return;
        this.current = "redis";
        this.widen();
        // Callers queued on the share go to the fleet's cap, as any caller does now.
        this.o.fallback.grantQueued();
        this.setDegraded(false, undefined);
      })
      .then(
        () => (this.rejoining = undefined),
        (cause: unknown) => {
          this.degrade(cause);
          // The next attempt waits a second: calls meanwhile stay on the local share. It starts
          // on its own: a process that calls nobody (its keys back off) would otherwise stay here.
          this.o.timers.setTimeout(() => {
            this.rejoining = undefined;
            if (!this.closed && this.o.connection.healthy) void this.rejoin();
          }, 1_000);
        },
      );
    return this.rejoining;
  }

  /** Stops reading the others' permits and frees the slots held back. */
  close(): void {
    this.closed = true;
    clearInterval(this.refresher);
    this.widen();
  }

  /** Takes as many free slots of the share as the others held permits, for `longestCallMs`. */
  private holdBackFree(): void {
    for (let n = Math.min(this.o.fallback.free, this.others); n > 0; n--) {
      const slot = this.o.fallback.adopt(false);
      this.reserved.set(
        slot,
        this.o.timers.setTimeout(() => this.free(slot), this.o.longestCallMs),
      );
    }
  }

  /** Frees the slots held back (every process's calls are counted in Redis again). */
  private widen(): void {
    for (const slot of [...this.reserved.keys()]) this.free(slot);
  }

  /**
   * Keeps the count of the others' permits at most a second old while this process calls
   * nobody (a try for a slot in the last half second counts), and looks at the epoch marker
   * (guard-epoch.ts): it knows it from its start and sees a loss on its own.
   */
  private async refresh(): Promise<void> {
    const now = this.o.clock.now();
    const seen = this.observations;
    if (this.current !== "redis" || !this.o.connection.healthy || now - this.observedAt < VIEW_REFRESH_MS / 2) return;
    const view = await this.o.connection
      .run("guard view", (client) =>
        Promise.all([
          othersPermits(client, this.o.keys.permits, this.o.owner, now),
          lookAtEpoch(client, this.o.keys.epoch, this.o.epoch, now),
        ]),
      )
      .catch(() => undefined);
    // A try for a slot answered meanwhile reported a newer count.
    if (view !== undefined && this.current === "redis" && this.observations === seen) this.observe(view[0]);
  }

  /** The epoch marker read now (see RedisGuard.lookForLoss). */
  async lookForLoss(): Promise<void> {
    const now = this.o.clock.now();
    const lost = await this.o.connection.run("guard look", (client) =>
      lookAtEpoch(client, this.o.keys.epoch, this.o.epoch, now),
    );
    await lost;
  }

  private free(slot: LocalPermit): void {
    if (!this.reserved.has(slot)) return;
    this.o.timers.clearTimeout(this.reserved.get(slot));
    this.reserved.delete(slot);
    slot.abandon();
  }

  private setDegraded(degraded: boolean, cause: unknown): void {
    if (degraded === this.isDegraded) return;
    this.isDegraded = degraded;
    this.o.onDegradedChange?.(degraded, cause);
  }
}
