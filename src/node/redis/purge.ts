import { createHash, randomBytes } from "node:crypto";
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
import { coversPurges, mergePurges, readablePurges } from "../../core/admin/purge-merge.ts";
import type { RedisConnection } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";
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
 * Compare-and-set of the list: written only if it is still the one the caller read, by its
 * version and its token (a list lost by Redis and written again reuses version numbers).
 * A hash without a snapshot is the empty list, version '0'.
 * KEYS[1] list key; ARGV: expected version, expected token, new version, new token, JSON.
 */
const SWAP = new LuaScript(`
local version = '0'
local token = ''
if redis.call('HEXISTS', KEYS[1], 'snapshot') == 1 then
  version = redis.call('HGET', KEYS[1], 'version') or '0'
  token = redis.call('HGET', KEYS[1], 'token') or ''
end
if version ~= ARGV[1] or token ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'token', ARGV[4], 'snapshot', ARGV[5])
return 1
`);

/**
 * One version of the purge list: its number (kept growing, for the versions before tokens),
 * the token written with it, and its stamp, the name this content goes by in the fleet.
 */
interface ListVersion {
  version: string;
  token: string;
  /** The token; for a list written by a herdless without tokens, the version and a digest of the list. */
  stamp: string;
}

const EMPTY: ListVersion = { version: "0", token: "", stamp: "0." };

/** A version after `version`, under a token of its own. */
function nextVersion(version: number): ListVersion {
  const token = `${version + 1}.${randomBytes(8).toString("hex")}`;
  return { version: String(version + 1), token, stamp: token };
}

/**
 * The purges of a Node fleet, kept in Redis. Each process holds a copy that it re-reads
 * three times per `propagationMs` (the hit path checks entries against the copy without a
 * round trip) and, after each read, records in Redis the version it now holds
 * (`${prefix}purges:read`, a hash of member id → stamp).
 *
 * A version names its content: every write carries a new random token, the write is a
 * compare-and-set on the token (and number), and a process that reads a token other than
 * the one it holds takes Redis's list only if it has every purge the process holds. If not
 * (Redis lost writes: restarted empty, flushed, a replica behind it promoted, and maybe
 * another purge written since), it merges the two and writes the union back. With numbers
 * alone, a list lost and written again with other purges reused the number the process
 * held: it kept its list, Redis's purge went unread there, its own purge was lost for the
 * rest of the fleet, and the purge was confirmed all the same. A hard purge is never undone.
 *
 * A purge returns only once every live member of the fleet ({@link FleetMembers.live}: one
 * that announced itself within the last 3 s) has recorded a stamp of a list seen in Redis
 * with the purge in it: each of them holds it, so the purged version is not served again by
 * any of them. A timer was not enough: a Redis that stalled right after the write left the
 * others without the new list (a process that cannot reach Redis keeps its last copy) while
 * the purge said done. Members that do not confirm within `propagationMs` + 3 s fail the
 * purge with {@link PurgeUnconfirmedError}, naming them; the purge is recorded, and the
 * operator tries again. A member cut off from Redis for longer than 3 s has left the member
 * list: it is not waited for, and it serves under the list it had until it reaches Redis again.
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
  private held: ListVersion = EMPTY;
  /** When the read behind the copy in hand was sent (performance.now(): the bound is real time, as the purge's wait). */
  private readSentAt = -Infinity;
  private reading: Promise<void> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly key: string;
  /** Member id → the stamp of the list it last read (and holds). */
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
      const now = this.o.clock.now();
      const next = recordPurge(this.snapshot, command, this.o.keyOf, now, PURGE_RETAIN_MS);
      const version = nextVersion(Number(this.held.version));
      if ((await this.swap(this.held, version, next)) === 1) {
        this.apply(version, next);
        return this.confirm(version.stamp, recordPurge(emptyPurges(), command, this.o.keyOf, now, PURGE_RETAIN_MS));
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
    const remote = await this.fetch();
    if (remote.stamp !== this.held.stamp) await this.take(remote, remote.snapshot());
    this.readSentAt = sentAt;
    // Sent only once the list is applied: a member that recorded a stamp holds it.
    const held = this.held.stamp;
    await this.o.connection.run("record purge list read", (client) =>
      client.hset(this.readKey, this.o.members.id, held),
    );
  }

  /** Redis's list as it is now: its version, and its content parsed on demand. */
  private async fetch(): Promise<ListVersion & { snapshot: () => PurgeSnapshot }> {
    const [version, token, json] = await this.o.connection.run("read purges", (client) =>
      client.hmget(this.key, "version", "token", "snapshot"),
    );
    if (!json) return { ...EMPTY, snapshot: emptyPurges };
    const v = version ?? "0";
    const t = token ?? "";
    // A herdless without tokens wrote it (a rolling upgrade): its content names it.
    const stamp = t.startsWith(`${v}.`) ? t : `${v}.legacy-${createHash("sha256").update(json).digest("hex")}`;
    return { version: v, token: t, stamp, snapshot: () => this.readable(json) };
  }

  /**
   * The list Redis holds, or the empty list when it is none this herdless reads (see
   * readablePurges): taken as a list Redis lost, so the purges this process holds are written
   * back over it (take), and hits go on being judged against a list that is one.
   */
  private readable(json: string): PurgeSnapshot {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      parsed = undefined;
    }
    const list = readablePurges(parsed);
    if (list) return list;
    this.o.onError?.(new HerdlessError("COORDINATOR_UNAVAILABLE", "the purge list in Redis is not one herdless reads"));
    return emptyPurges();
  }

  /**
   * Redis holds another list than this process: taken if it has every purge this one holds;
   * otherwise (Redis restarted empty, was flushed, or a replica behind it took over, and
   * maybe another purge was written since) the two are merged and the union written back.
   * Taken from Redis, the other list undid this process's purges in every process: the copies
   * a hard purge only hid came back for the rest of their lifetime. The union is held even if
   * another process writes first: it has Redis's purges too, and the next read merges again.
   */
  private async take(remote: ListVersion, list: PurgeSnapshot): Promise<void> {
    const now = this.o.clock.now();
    if (coversPurges(list, this.snapshot, now - PURGE_RETAIN_MS)) return this.apply(remote, list);
    const union = mergePurges(this.snapshot, list, now, PURGE_RETAIN_MS);
    const version = nextVersion(Math.max(Number(remote.version), Number(this.held.version)));
    await this.swap(remote, version, union);
    this.apply(version, union);
  }

  private swap(expected: ListVersion, next: ListVersion, snapshot: PurgeSnapshot): Promise<unknown> {
    return this.o.connection.run("purge", (client) =>
      SWAP.run(
        client,
        [this.key],
        [expected.version, expected.token, next.version, next.token, JSON.stringify(snapshot)],
      ),
    );
  }

  /**
   * Waits until every other live member holds a list with the purge (see the class comment);
   * past `propagationMs` + the member TTL, rejects naming those that do not. The first look
   * comes after a pause, which also moves the clock past the purge's mark.
   */
  private async confirm(stamp: string, marks: PurgeSnapshot): Promise<void> {
    const giveUpAt = performance.now() + this.o.propagationMs + MEMBER_TTL_MS;
    const pollMs = Math.max(5, Math.floor(this.o.propagationMs / 10));
    /** Stamp → whether that list has the purge. */
    const judged = new Map([[stamp, true]]);
    let missing: string[] | undefined;
    do {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      missing = await this.unconfirmed(judged, marks).catch(() => undefined);
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

  /**
   * The live members, this one aside, whose recorded stamp is not one of a list with the
   * purge. A stamp not judged yet is judged if it is Redis's list now (a later purge, or a
   * merge after Redis lost writes); a list it does not name is never taken for one it does.
   * Forgets the records of members gone.
   */
  private async unconfirmed(judged: Map<string, boolean>, marks: PurgeSnapshot): Promise<string[]> {
    const live = new Set(await this.o.members.live());
    const reads = await this.o.connection.run("read purge list reads", (client) => client.hgetall(this.readKey));
    const gone = Object.keys(reads).filter((id) => !live.has(id));
    if (gone.length > 0)
      void this.o.connection.run("forget members gone", (client) => client.hdel(this.readKey, ...gone)).catch(() => 0);
    live.delete(this.o.members.id);
    const waiting = () => [...live].filter((id) => judged.get(reads[id] ?? "") !== true);
    if (waiting().some((id) => reads[id] !== undefined && !judged.has(reads[id]))) {
      const now = await this.fetch();
      if (!judged.has(now.stamp)) judged.set(now.stamp, coversPurges(now.snapshot(), marks, -Infinity));
    }
    return waiting();
  }

  private apply(version: ListVersion, snapshot: PurgeSnapshot): void {
    this.held = { version: version.version, token: version.token, stamp: version.stamp };
    this.snapshot = snapshot;
  }
}
