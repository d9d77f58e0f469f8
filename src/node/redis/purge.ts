import type { Clock } from "../../core/clock.ts";
import { HerdlessError } from "../../core/errors.ts";
import {
  emptyPurges,
  PURGE_RETAIN_MS,
  PurgeUnconfirmedError,
  recordPurge,
  type PurgeCommand,
  type PurgeRegistry,
  type PurgeSnapshot,
} from "../../core/admin/purge.ts";
import type { RedisConnection } from "./connection.ts";
import { LuaScript } from "./connection.ts";
import { MEMBER_TTL_MS, type FleetMembers } from "./members.ts";

export interface RedisPurgeRegistryOptions {
  connection: RedisConnection;
  prefix: string;
  clock: Clock;
  /** Maps a purge URL to its primary cache key. */
  keyOf: (url: string) => readonly string[];
  /** This process in the fleet (its id), and who else is in it now: every one of them must confirm a purge. */
  members: Pick<FleetMembers, "id" | "live">;
  /** Every process re-reads the shared snapshot at least this often. */
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
 * round trip) and, after each read, records in Redis the version it now holds
 * (`${prefix}purges:read`, a hash of member id → version).
 *
 * A purge returns only once every live member of the fleet ({@link FleetMembers.live}: one
 * that announced itself within the last 3 s) has recorded a version at least the purge's:
 * each of them holds it, so the purged version is not served again by any of them. A timer
 * was not enough: a Redis that stalled right after the write left the others without the new
 * list (a process that cannot reach Redis keeps its last copy) while the purge said done.
 * Members that do not confirm within `propagationMs` + 3 s fail the purge with
 * {@link PurgeUnconfirmedError}, naming them; the purge is recorded, and the operator tries again.
 * A member cut off from Redis for longer than 3 s has left the member list: it is not waited
 * for, and it serves under the list it had until it reaches Redis again.
 *
 * The copy's bound is kept, not hoped for: a copy whose read was sent more than
 * `propagationMs` ago (a timer late on a busy event loop, a slow Redis) is not used; the
 * request waits for a fresh read, one per process however many wait ({@link current}). Only
 * a process that cannot reach Redis keeps its last copy.
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
  /** Member id → the version of the list it last read (and holds). */
  private readonly readKey: string;

  constructor(private readonly o: RedisPurgeRegistryOptions) {
    this.key = `${o.prefix}purges`;
    this.readKey = `${o.prefix}purges:read`;
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
        this.apply(nextVersion, next);
        return this.confirm(nextVersion);
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
    // Sent only once the list is applied: a member that recorded a version holds it.
    const held = this.version;
    await this.o.connection.run("record purge list read", (client) =>
      client.hset(this.readKey, this.o.members.id, held),
    );
  }

  /**
   * Waits until every other live member holds `version` (see the class comment); past
   * `propagationMs` + the member TTL, rejects naming those that do not. The first look comes
   * after a pause, which also moves the clock past the purge's mark.
   */
  private async confirm(version: string): Promise<void> {
    const giveUpAt = performance.now() + this.o.propagationMs + MEMBER_TTL_MS;
    const pollMs = Math.max(5, Math.floor(this.o.propagationMs / 10));
    let missing: string[] | undefined;
    do {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      missing = await this.unconfirmed(version).catch(() => undefined);
      if (missing?.length === 0) return;
    } while (performance.now() < giveUpAt);
    const waitedMs = this.o.propagationMs + MEMBER_TTL_MS;
    throw new PurgeUnconfirmedError(
      missing === undefined
        ? `purge recorded, but Redis did not answer who holds it within ${waitedMs} ms; try again`
        : `purge recorded, but ${missing.length} process(es) of the fleet had not read it within ${waitedMs} ms (${missing.join(", ")}): they may still serve what it purged; try again`,
      missing,
    );
  }

  /** The live members, this one aside, that have not recorded `version` or later. Forgets the records of members gone. */
  private async unconfirmed(version: string): Promise<string[]> {
    const live = new Set(await this.o.members.live());
    const reads = await this.o.connection.run("read purge list reads", (client) => client.hgetall(this.readKey));
    const gone = Object.keys(reads).filter((id) => !live.has(id));
    if (gone.length > 0)
      void this.o.connection.run("forget members gone", (client) => client.hdel(this.readKey, ...gone)).catch(() => 0);
    live.delete(this.o.members.id);
    return [...live].filter((id) => !(Number(reads[id] ?? -1) >= Number(version)));
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

function hasMarks(snapshot: PurgeSnapshot): boolean {
  return snapshot.all !== undefined || Object.keys(snapshot.keys).length > 0 || Object.keys(snapshot.tags).length > 0;
}
