import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../../core/clock.ts";
import { systemClock } from "../../core/clock.ts";
import { checkPrefix, type RedisConnection } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";

/** How often a process announces itself. */
const HEARTBEAT_MS = 1_000;
/** A process not heard from for this long has left the fleet (three missed heartbeats). */
export const MEMBER_TTL_MS = 3 * HEARTBEAT_MS;

/**
 * Announces ARGV[1] as alive until Redis's now + ARGV[2] ms, drops members past their
 * time, and returns the live ones. Redis's clock, so process clocks never disagree on who left.
 */
const BEAT = new LuaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`);

/** The members whose announcement has not run out by Redis's now; reads only. */
const LIVE = new LuaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`);

export interface FleetMembersOptions {
  connection: RedisConnection;
  /** Namespace shared with the rest of the deployment. */
  prefix?: string;
  clock?: Clock;
  onError?: (error: unknown) => void;
}

/**
 * Who is in the fleet, from heartbeats in Redis (`${prefix}fleet:members`, a zset of process
 * ids scored by expiry). Read while Redis is up; frozen while it is down, which is when it
 * matters: each process then takes {@link share} of the cap, and the shares add up to the cap
 * because every process ranks the same member list.
 *
 * A member seen once is kept until it has been missing from Redis for {@link MEMBER_TTL_MS}
 * of this process's own time with Redis reachable: a Redis that restarted empty does not
 * make the fleet look smaller (and the shares wider) before the others beat again.
 *
 * @example
 * const members = new FleetMembers({ connection, prefix });
 * members.start();
 * const cap = members.share(config.origin.maxConcurrency, config.fleet.minProcesses);
 */
export class FleetMembers {
  /**
   * This process's id in the member list: host and pid, for an operator reading which
   * process has not confirmed a purge, and a random part, unique across restarts.
   */
  readonly id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly key: string;
  private readonly clock: Clock;
  /** Member id → when this process last saw it alive in Redis (own clock). */
  private readonly seen = new Map<string, number>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly o: FleetMembersOptions) {
    this.key = `${checkPrefix(o.prefix ?? "herdless:")}fleet:members`;
    this.clock = o.clock ?? systemClock;
  }

  /** Beats now and every second until {@link stop}. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Stops beating and leaves the member list at once, so the others' shares widen sooner. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.o.connection.run("leave fleet", (client) => client.zrem(this.key, this.id)).catch(() => undefined);
  }

  /** The processes of the fleet as last seen, this one included, in rank order. */
  get members(): string[] {
    return [...new Set([...this.seen.keys(), this.id])].sort();
  }

  /**
   * This process's part of `maxConcurrency` for a fleet of `max(members, minProcesses)`:
   * an equal part each, the remainder to the first ranks, so the parts add up to exactly
   * `maxConcurrency`. Can be 0 when the fleet has more processes than slots: that process
   * then serves stored copies only until Redis is back. A process that has not seen at
   * least `minProcesses` members takes the plain part only.
   */
  share(maxConcurrency: number, minProcesses: number): number {
    const members = this.members;
    const size = Math.max(members.length, minProcesses);
    // Ranks mean the same to every process only once each sees the whole fleet; until then
    // (fewer members seen than minProcesses) take the plain part, never the remainder.
    const rank = this.seen.has(this.id) && members.length >= minProcesses ? members.indexOf(this.id) : size - 1;
    return Math.floor(maxConcurrency / size) + (rank < maxConcurrency % size ? 1 : 0);
  }

  /** The members alive now by Redis's clock (announced within {@link MEMBER_TTL_MS}), read fresh; rejects while Redis is unreachable. */
  async live(): Promise<string[]> {
    const live = await this.o.connection.run("read fleet members", (client) => LIVE.run(client, [this.key], []));
    return Array.isArray(live) ? live.map(String) : [];
  }

  /** One heartbeat; exposed so tests need not wait for the interval. */
  async beat(): Promise<void> {
    let live: unknown;
    try {
      live = await this.o.connection.run("fleet heartbeat", (client) =>
        BEAT.run(client, [this.key], [this.id, MEMBER_TTL_MS]),
      );
    } catch (error) {
      this.o.onError?.(error);
      return;
    }
    const now = this.clock.now();
    if (Array.isArray(live)) for (const id of live) this.seen.set(String(id), now);
    for (const [id, at] of this.seen) if (now - at > MEMBER_TTL_MS) this.seen.delete(id);
  }
}
