import type { Clock } from "../../core/clock.ts";
import { HerdlessError } from "../../core/errors.ts";
import {
  emptyPurges,
  PURGE_RETAIN_MS,
  recordPurge,
  type PurgeCommand,
  type PurgeRegistry,
  type PurgeSnapshot,
} from "../../core/admin/purge.ts";
import type { RedisConnection } from "./connection.ts";
import { LuaScript } from "./connection.ts";

export interface RedisPurgeRegistryOptions {
  connection: RedisConnection;
  prefix: string;
  clock: Clock;
  /** Maps a purge URL to its primary cache key. */
  keyOf: (url: string) => readonly string[];
  /** Every process re-reads the shared snapshot at least this often; a purge returns after it. */
  propagationMs: number;
  onError?: (error: unknown) => void;
}

/**
 * Compare-and-set of the snapshot: written only if it is still the version the caller read.
 * KEYS[1] snapshot key; ARGV: expected version, new version, JSON.
 */
const SWAP = new LuaScript(`
local current = redis.call('HGET', KEYS[1], 'version') or '0'
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'snapshot', ARGV[3])
return 1
`);

/**
 * The purges of a Node fleet, kept in Redis. Each process holds a copy that it re-reads
 * three times per `propagationMs` (the hit path checks entries against the copy without a
 * round trip), and a purge returns only after `propagationMs` has passed since it was
 * written: by then every process that can reach Redis has the purge, so the purged version
 * is not served again anywhere.
 *
 * The bound is kept, not hoped for: a copy whose read was sent more than `propagationMs`
 * ago (a timer late on a busy event loop, a slow Redis) is not used; the request waits for
 * a fresh read, one per process however many wait ({@link current}). Only a process that
 * cannot reach Redis keeps its last copy: it could not have seen the purge either way.
 *
 * Marks are instants of the purging process's clock: fleet clocks are expected to be
 * NTP-synchronized; a skew of S ms can purge an entry fetched within S ms after the purge
 * once more (one extra revalidation), never keep a purged one.
 */
export class RedisPurgeRegistry implements PurgeRegistry {
  private snapshot: PurgeSnapshot = emptyPurges();
  private version = "0";
  /** When the read behind the copy in hand was sent (performance.now(): the bound is real time, as the purge's wait). */
  private readSentAt = -Infinity;
  private reading: Promise<void> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly key: string;

  constructor(private readonly o: RedisPurgeRegistryOptions) {
    this.key = `${o.prefix}purges`;
  }

  /** Loads the shared snapshot and keeps re-reading it. */
  async start(): Promise<void> {
    await this.refresh().catch((error: unknown) => this.o.onError?.(error));
    this.timer = setInterval(
      () => void this.refresh().catch((error: unknown) => this.o.onError?.(error)),
      Math.max(5, Math.floor(this.o.propagationMs / 3)),
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The copy while it is within its bound; undefined past it (the caller then asks {@link current}). */
  copy(): PurgeSnapshot | undefined {
    return performance.now() - this.readSentAt <= this.o.propagationMs || !this.o.connection.healthy
      ? this.snapshot
      : undefined;
  }

  /** The purges in force: the copy within its bound, else a fresh read shared by every request waiting; the last copy if that read fails. */
  current(): PurgeSnapshot | Promise<PurgeSnapshot> {
    return (
      this.copy() ??
      this.refresh().then(
        () => this.snapshot,
        () => this.snapshot,
      )
    );
  }

  async purge(command: PurgeCommand): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      await this.refresh();
      const next = recordPurge(this.snapshot, command, this.o.keyOf, this.o.clock.now(), PURGE_RETAIN_MS);
      const nextVersion = String(Number(this.version) + 1);
      const swapped = await this.o.connection.run("purge", (client) =>
        SWAP.run(client, [this.key], [this.version, nextVersion, JSON.stringify(next)]),
      );
      if (swapped === 1) {
        const writtenBy = performance.now();
        this.apply(nextVersion, next);
        await pastBound(writtenBy, this.o.propagationMs);
        return;
      }
    }
    throw new HerdlessError("COORDINATOR_UNAVAILABLE", "purge kept racing other purges; try again");
  }

  /** One read at a time: the timer, a purge and the requests past the bound share it. */
  private refresh(): Promise<void> {
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async read(): Promise<void> {
    const sentAt = performance.now();
    const [version, json] = await this.o.connection.run("read purges", (client) =>
      client.hmget(this.key, "version", "snapshot"),
    );
    const remote = version && json ? version : "0";
    if (Number(remote) < Number(this.version) && hasMarks(this.snapshot)) await this.reseed(remote);
    else if (remote === "0") this.apply("0", emptyPurges());
    else if (version !== this.version) this.apply(remote, JSON.parse(json!) as PurgeSnapshot);
    this.readSentAt = sentAt;
  }

  /**
   * Redis holds an older list than this process (it restarted empty, was flushed, or a replica
   * behind it took over): the purges this process holds are written back. Taken from Redis,
   * the older list undid them in every process: the copies a hard purge only hid came back for
   * the rest of their lifetime. Another process that writes first wins the swap; the next read
   * takes its list, which held the same purges.
   */
  private async reseed(remote: string): Promise<void> {
    const snapshot = this.snapshot;
    await this.o.connection.run("restore purges", (client) =>
      SWAP.run(client, [this.key], [remote, this.version, JSON.stringify(snapshot)]),
    );
  }

  private apply(version: string, snapshot: PurgeSnapshot): void {
    this.version = version;
    this.snapshot = snapshot;
  }
}

/**
 * Waits until more than `boundMs` has passed since `since` on the clock {@link RedisPurgeRegistry.copy}
 * judges copies by. A read that missed the write was sent before its reply came back (`since`), so
 * by then every such copy is past its bound. A timer alone is not enough: Node fires one against
 * its loop's cached, whole-millisecond time, up to a millisecond or more before `boundMs` has
 * passed on `performance.now()`, which left a member's copy without the purge still in bound
 * when the purge returned.
 */
async function pastBound(since: number, boundMs: number): Promise<void> {
  for (let left = boundMs; left >= 0; left = boundMs - (performance.now() - since))
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(left) + 1));
}

function hasMarks(snapshot: PurgeSnapshot): boolean {
  return snapshot.all !== undefined || Object.keys(snapshot.keys).length > 0 || Object.keys(snapshot.tags).length > 0;
}
