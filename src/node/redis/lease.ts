import type { Clock } from "../../core/clock.ts";
import { systemClock } from "../../core/clock.ts";
import { HerdlessError } from "../../core/errors.ts";
import type { Lease, LeaseManager } from "../../core/fill/lease.ts";
import type { RedisConnection } from "./connection.ts";
import { checkPrefix, slotKey } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";
import { EXTEND, reassertLease, REASSERT_MARGIN_MS } from "./lease-reassert.ts";
import { ACQUIRE, dropGhost, Nonces, type Ghost } from "./lease-ghosts.ts";
import { Redo } from "./redo.ts";

export interface RedisLeaseManagerOptions {
  connection: RedisConnection;
  /** Namespace shared with the {@link RedisStore} of the same deployment. */
  prefix?: string;
  clock?: Clock;
  /**
   * Set when reads sent after an acquire must be answered after it (KeyCoordinatorOptions
   * .readsFollowAcquire): called as each acquire is sent (the fleet's store lets go of its
   * shared reads: RedisStore.cutReads), and the acquire goes as EVAL, one command that Redis
   * never refuses for its script, whatever its script cache holds (lua-script.ts).
   */
  onAcquire?: (key: string) => void;
  /**
   * Set in a fleet whose guard watches for Redis losing its data (RedisGuard.lookForLoss): an
   * extend that finds its lease taken asks it to look, and tries again once the loss it may
   * have seen was dealt with ({@link RedisLeaseManager.reassert}).
   */
  lookForLoss?: () => Promise<void>;
  /**
   * Told when a lease was freed once Redis answered again: one taken by an acquire that ran
   * after its caller gave up on it (lease-ghosts.ts), or one whose release failed. The members
   * that waited on it ask again (the fleet announces it): the news of the flight's end went
   * with the failed release, and they waited out their whole wait (`coordinator.lockLeaseMs`).
   */
  onFreedLate?: (key: string) => void;
}

/**
 * How long a fence key outlives the lease it was issued with. Tokens are never below Redis's
 * clock (TIME, in ms), so once that clock is past a key's last token, a forgotten fence
 * restarts at `now`, still above every token the key had: the fence only has to last until
 * then. The margin covers a clock stepped back by NTP; without a TTL every key ever leased
 * kept a `fence:` key in Redis forever.
 */
const FENCE_MARGIN_MS = 10 * 60_000;

/** Compare-and-set: only the holder of ARGV[1] marks its lease, for as long as the lease lives. */
const MARK = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl) end
end
return 0
`);

/** Compare-and-delete: a holder whose lease expired and was taken frees nothing. The mark and the claim go with the lease. */
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3])
  return redis.call('DEL', KEYS[1])
end
return 0
`);

/** How often releases that failed are tried again while their leases last. */
const RELEASE_RETRY_MS = 100;

/**
 * The fleet-wide {@link LeaseManager}: `SET NX PX` with a fencing token from a per-key
 * `INCR` counter; extend and release act only on the caller's own token (as node-redlock
 * does). `expiresAt` is computed from the clock read *before* the command is sent, so it
 * never claims more time than Redis grants.
 *
 * @example
 * const leases = new RedisLeaseManager({ connection, prefix: "herdless:" });
 * const lease = await leases.acquire(key, 15_000);
 * if (lease) try { ... } finally { await leases.release(lease); }
 */
export class RedisLeaseManager implements LeaseManager {
  private readonly connection: RedisConnection;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly onAcquire: ((key: string) => void) | undefined;
  /** Releases that failed and acquires that may run after their caller gave up: done once Redis answers. */
  private readonly redo = new Redo(RELEASE_RETRY_MS);
  private readonly nonces = new Nonces();
  /** The leases of this process's fills (taken, not yet released nor found lost), with their refresh-ahead mark. */
  private readonly mine = new Map<Lease, number | undefined>();
  /** Released leases: an extend that looked for a loss meanwhile must not send EXTEND again (it takes a key that is gone). */
  private readonly released = new WeakSet<Lease>();
  private readonly lookForLoss: (() => Promise<void>) | undefined;
  private readonly onFreedLate: ((key: string) => void) | undefined;

  constructor(options: RedisLeaseManagerOptions) {
    this.connection = options.connection;
    this.prefix = checkPrefix(options.prefix ?? "herdless:");
    this.clock = options.clock ?? systemClock;
    this.onAcquire = options.onAcquire;
    this.lookForLoss = options.lookForLoss;
    this.onFreedLate = options.onFreedLate;
  }

  async acquire(key: string, ttlMs: number): Promise<Lease | undefined> {
    checkTtl(ttlMs);
    const startedAt = this.clock.now();
    const ghost: Ghost = { key, nonce: this.nonces.next(), ttlMs };
    const keys = [this.leaseKey(key), this.fenceKey(key), this.claimKey(key), this.droppedKey(ghost)];
    const args = [Math.ceil(ttlMs), Math.ceil(ttlMs) + FENCE_MARGIN_MS, ghost.nonce];
    this.onAcquire?.(key);
    const token = await this.connection
      .run("lease acquire", (client) =>
        this.onAcquire ? ACQUIRE.runText(client, keys, args) : ACQUIRE.run(client, keys, args),
      )
      .catch((error: unknown) => {
        // Sent, unanswered: Redis may run it yet, and take the key for a token nobody knows.
        this.redo.undoIfRan(error, () => this.dropGhost(ghost));
        throw error;
      });
    if (typeof token !== "number" || token === 0) return undefined;
    const lease = { key, token, expiresAt: startedAt + ttlMs };
    this.mine.set(lease, undefined);
    return lease;
  }

  /**
   * On success also moves `lease.expiresAt`, so the caller's lease object stays truthful. A
   * lease found taken may have gone with Redis's data: once `lookForLoss` dealt with a loss it
   * saw ({@link reassert}), it is tried once more.
   */
  async extend(lease: Lease, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs);
    const startedAt = this.clock.now();
    const unreleased = () => !this.released.has(lease);
    const once = () =>
      this.connection.run("lease extend", (client) =>
        EXTEND.run(
          client,
          [this.leaseKey(lease.key), this.renewKey(lease.key)],
          [String(lease.token), Math.ceil(ttlMs)],
        ),
      );
    let extended = await once();
    const looked =
      extended !== 1 &&
      unreleased() &&
      (await this.lookForLoss?.().then(
        () => true,
        () => false,
      ));
    // Released while it looked (the fill ended): sent again, the EXTEND would take the key back.
    if (looked && unreleased()) extended = await once();
    if (extended !== 1) {
      this.mine.delete(lease);
      return false;
    }
    lease.expiresAt = startedAt + ttlMs;
    return true;
  }

  /** Whether `lease` is still its holder's (one read): asked only by a flight whose origin permit had to wait (held-flight.ts). */
  async holds(lease: Lease): Promise<boolean> {
    const held = await this.connection.run("lease holds", (client) => client.get(this.leaseKey(lease.key)));
    if (held !== String(lease.token)) this.mine.delete(lease);
    return held === String(lease.token);
  }

  /**
   * Redis lost its data (seen by the guard, guard-epoch.ts): writes back the lease of every
   * fill this process runs (lease-reassert.ts), over a holder that took the key since while no
   * new origin permit can have been granted (before `graceUntil`), else only where it is gone.
   * One script per lease, sent together; a lease that cannot be written back is left as is.
   */
  async reassert(graceUntil: number): Promise<void> {
    const now = this.clock.now();
    const overNewer = now + REASSERT_MARGIN_MS < graceUntil;
    const written = [...this.mine].map(async ([lease, renews]) => {
      const ttlMs = lease.expiresAt - now;
      if (ttlMs <= 0) return void this.mine.delete(lease);
      const keys = { lease: this.leaseKey(lease.key), fence: this.fenceKey(lease.key), mark: this.renewKey(lease.key) };
      const fenceTtlMs = Math.ceil(ttlMs) + FENCE_MARGIN_MS;
      const r = { token: lease.token, ttlMs, overNewer, fenceTtlMs, renews };
      await this.connection.run("lease reassert", (c) => reassertLease(c, keys, r)).catch(() => false);
    });
    await Promise.all(written);
  }

  /**
   * A release that fails is tried again every {@link RELEASE_RETRY_MS} until Redis answers or
   * the lease has lapsed: left to lapse, it kept the key from every other process for the
   * whole lease (`coordinator.lockLeaseMs`). Only our own token is deleted: if the lease
   * lapsed and was taken meanwhile, the retry frees nothing.
   */
  async release(lease: Lease): Promise<boolean> {
    this.mine.delete(lease);
    this.released.add(lease);
    try {
      return await this.releaseNow(lease);
    } catch (error) {
      // Told even if the release itself ran late (it was in Redis's socket): its news did not.
      const attempt = () => this.releaseNow(lease).then(() => this.onFreedLate?.(lease.key));
      this.redo.add({ attempt, lapsed: () => lease.expiresAt <= this.clock.now() });
      throw error;
    }
  }

  private async releaseNow(lease: Lease): Promise<boolean> {
    const keys = [this.leaseKey(lease.key), this.renewKey(lease.key), this.claimKey(lease.key)];
    const released = await this.connection.run("lease release", (client) =>
      RELEASE.run(client, keys, [String(lease.token)]),
    );
    return released === 1;
  }

  /** Undoes an acquire that may have run after its caller gave up (lease-ghosts.ts); its waiters hear of a freed lease. */
  private async dropGhost(ghost: Ghost): Promise<void> {
    const keys = {
      ...{ lease: this.leaseKey(ghost.key), mark: this.renewKey(ghost.key) },
      ...{ claim: this.claimKey(ghost.key), dropped: this.droppedKey(ghost) },
    };
    const freed = await this.connection.run("lease drop", (client) => dropGhost(client, keys, ghost));
    if (freed) this.onFreedLate?.(ghost.key);
  }

  /**
   * Whether anyone holds `key`'s lease now: a waiter that subscribed after the holder's
   * release and announcement (behind its answer, for a stored entry) would otherwise wait out its timeout.
   */
  async held(key: string): Promise<boolean> {
    return (await this.connection.run("lease held", (client) => client.exists(this.leaseKey(key)))) === 1;
  }

  /** The Redis key of `key`'s lease (exposed for operators and tests); one slot with its fence. */
  leaseKey(key: string): string {
    return slotKey(this.prefix, "lease", key);
  }

  /** A write per refresh-ahead (once per key per lifetime), beside the lease in its slot. */
  async markRenewing(lease: Lease, renews: number): Promise<void> {
    if (this.mine.has(lease)) this.mine.set(lease, renews);
    await this.connection.run("lease mark", (client) =>
      MARK.run(client, [this.leaseKey(lease.key), this.renewKey(lease.key)], [String(lease.token), String(renews)]),
    );
  }

  /** One read, made only by a process that found the lease busy over an expired copy. */
  async renewing(key: string): Promise<number | undefined> {
    const mark = await this.connection.run("lease renewing", (client) => client.get(this.renewKey(key)));
    const renews = mark === null ? Number.NaN : Number(mark);
    return Number.isFinite(renews) ? renews : undefined;
  }

  /** The Redis key of the refresh-ahead mark of `key`'s lease holder. */
  renewKey(key: string): string {
    return slotKey(this.prefix, "renew", key);
  }

  /** The nonce and token of the acquire that took `key`'s lease (lease-ghosts.ts). */
  private claimKey(key: string): string {
    return slotKey(this.prefix, "claim", key);
  }

  /** Marks the acquire of `ghost.nonce` as dropped before it ran (lease-ghosts.ts); in the key's slot. */
  private droppedKey(ghost: Ghost): string {
    return `${slotKey(this.prefix, "dropped", ghost.key)}:${ghost.nonce}`;
  }

  /** The Redis key of `key`'s fencing counter. */
  fenceKey(key: string): string {
    return slotKey(this.prefix, "fence", key);
  }
}

function checkTtl(ttlMs: number): void {
  if (!(Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw new HerdlessError(
      "CONFIG_INVALID",
      `lease ttlMs must be a positive number of milliseconds, got ${String(ttlMs)}`,
    );
  }
}
