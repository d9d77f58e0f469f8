import type { Clock } from "../core/clock.ts";
import { HerdlessError } from "../core/errors.ts";
import type { Lease, LeaseManager } from "../core/fill/lease.ts";
import { SqlTables } from "./sql-tables.ts";

/** A lease as persisted: who holds it (for diagnostics), its fencing token, its expiry. */
export interface LeaseRecord {
  owner?: string;
  token: number;
  expiresAt: number;
}

/**
 * A {@link LeaseManager} in a Durable Object's SQLite database, so a lease outlives the
 * object's eviction: an object rebuilt mid-fetch still sees the lease and does not start
 * a second origin request until it expires.
 *
 * Fencing tokens come from one persisted counter per storage, so they strictly increase
 * for every key, across evictions and restarts. The counter never goes below the clock's
 * epoch-ms either: if the object's storage is ever wiped, new tokens still beat the tokens
 * of entries written before the wipe (which may live on in Cache API copies). The counter
 * is a row of the leases table under the key `""`, which no cache key is (they start with
 * the method): every cache key has an object of its own, so a table of its own for the
 * counter was made once per key, on the path of its first miss (3 rows written and
 * ~0.3 ms in local workerd, see bench/miss-floor.ts). An object that has the counter table
 * of earlier versions (`herdless_lease_counter`) still counts from it until it is forgotten.
 *
 * Every method is synchronous SQL in a `transactionSync`, so requests that interleave at
 * an `await` elsewhere in the object can never both take the same lease.
 *
 * @example
 * const leases = new StorageLeaseManager(this.ctx.storage, systemClock);
 * const lease = await leases.acquire(key, config.coordinator.lockLeaseMs);
 * if (lease) try { ... } finally { await leases.release(lease); }
 */
export class StorageLeaseManager implements LeaseManager {
  /** Made by the first acquire (see SqlTables). */
  private readonly tables: SqlTables;
  /** The last token this instance issued: a lease released unwritten (WriteBehindLeases) left none in storage. */
  private issued = 0;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly clock: Clock,
    /** The object's tables, when its parts share them (SqlTables.ofObject). */
    tables?: SqlTables,
  ) {
    this.tables = tables ?? new SqlTables(storage);
  }

  /** Takes the lease when free or expired; `owner` is recorded for diagnostics only. */
  async acquire(key: string, ttlMs: number, owner?: string): Promise<Lease | undefined> {
    const taken = this.take(key, ttlMs, owner);
    taken?.write();
    return taken?.lease;
  }

  /**
   * {@link acquire} in two steps: the decision now (read synchronously, so nothing
   * interleaves), and the write it implies, for the caller to make before it relies on the
   * lease outside this object and before any other call here (see WriteBehindLeases: an
   * object's outgoing calls wait for the commit of every write made before them).
   */
  take(key: string, ttlMs: number, owner?: string): { lease: Lease; write: () => void } | undefined {
    checkTtl(ttlMs);
    if (key === COUNTER_KEY) throw new HerdlessError("CONFIG_INVALID", "a lease key must not be empty");
    const now = this.clock.now();
    const current = this.read(key);
    if (current && now < current.expiresAt) return undefined;
    const token = Math.max((this.lastToken() ?? 0) + 1, this.issued + 1, now);
    this.issued = token;
    const lease = { key, token, expiresAt: now + ttlMs };
    const write = () =>
      this.storage.transactionSync(() => {
        this.tables.ensure(
          "herdless_leases",
          "(key TEXT PRIMARY KEY, owner TEXT, token INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
        );
        this.storage.sql.exec(
          "INSERT OR REPLACE INTO herdless_leases (key, owner, token, expires_at) VALUES (?, NULL, ?, 0)",
          COUNTER_KEY,
          token,
        );
        this.storage.sql.exec(
          "INSERT OR REPLACE INTO herdless_leases (key, owner, token, expires_at) VALUES (?, ?, ?, ?)",
          key,
          owner ?? null,
          token,
          lease.expiresAt,
        );
      });
    return { lease, write };
  }

  /** Whether `lease` is still within its expiry, by this manager's clock. */
  live(lease: Lease): boolean {
    return this.clock.now() < lease.expiresAt;
  }

  /**
   * Pushes the expiry to now + ttlMs; false when the lease changed hands or was released.
   *
   * A lease past its expiry that nobody took is still the holder's: only this object can take
   * it (the row is its own), and it has not, so no other fetch of the key started and the
   * fencing token still stands. That holder is alive (it is calling): the object's event
   * loop was only late to run its heartbeat, as happens while it feeds large bodies to many
   * streams. Losing the lease then would abort a body that is still arriving for nothing.
   */
  async extend(lease: Lease, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs);
    return this.storage.transactionSync(() => {
      const now = this.clock.now();
      const current = this.read(lease.key);
      if (!current || current.token !== lease.token) return false;
      const expiresAt = now + ttlMs;
      this.storage.sql.exec("UPDATE herdless_leases SET expires_at = ? WHERE key = ?", expiresAt, lease.key);
      lease.expiresAt = expiresAt;
      return true;
    });
  }

  /** Frees the lease; false when it had expired or belongs to a newer token. */
  async release(lease: Lease): Promise<boolean> {
    return this.storage.transactionSync(() => {
      const current = this.read(lease.key);
      if (!current || current.token !== lease.token) return false;
      this.storage.sql.exec("DELETE FROM herdless_leases WHERE key = ?", lease.key);
      const now = this.clock.now();
      this.forgetCounterIfPast(now);
      return now < current.expiresAt;
    });
  }

  /**
   * From when this storage keeps nothing a later holder needs: no live lease, and the clock
   * past every token issued (a token issued afterwards is then `now`, above them all; see
   * forgetCounterIfPast). The key's object may then drop its storage (storage.deleteAll).
   */
  quietFrom(): number {
    const now = this.clock.now();
    // Only the tokens in storage: one issued here and never written was never used.
    const lastToken = this.lastToken() ?? 0;
    const live = this.tables.has("herdless_leases")
      ? this.storage.sql
          .exec<{ at: number | null }>(
            "SELECT MAX(expires_at) AS at FROM herdless_leases WHERE key <> ? AND expires_at > ?",
            COUNTER_KEY,
            now,
          )
          .toArray()[0]?.at
      : undefined;
    return Math.max(lastToken + 1, live ?? 0);
  }

  /** The live lease on `key`, if any. */
  current(key: string): LeaseRecord | undefined {
    const record = this.read(key);
    return record && this.clock.now() < record.expiresAt ? record : undefined;
  }

  private read(key: string): LeaseRecord | undefined {
    if (!this.tables.has("herdless_leases")) return undefined;
    const row = this.storage.sql
      .exec<{ owner: string | null; token: number; expires_at: number }>(
        "SELECT owner, token, expires_at FROM herdless_leases WHERE key = ?",
        key,
      )
      .toArray()[0];
    if (!row) return undefined;
    return { ...(row.owner === null ? {} : { owner: row.owner }), token: row.token, expiresAt: row.expires_at };
  }

  /**
   * Deletes the token counter once no lease is held and the clock is past the last token:
   * the next token is then `now`, above every token issued, so the counter is not needed
   * (one object per key ever seen would otherwise keep a row each, forever). The empty table
   * goes with the rest of the object's storage once the key keeps nothing at all (see
   * {@link quietFrom} and KeyCoordinatorObject's freeIfIdle).
   */
  private forgetCounterIfPast(now: number): void {
    const last = this.lastToken();
    if (last === undefined || last >= now) return;
    // The counter's row never expires (expires_at 0): only leases count here.
    const live = this.storage.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM herdless_leases WHERE expires_at > ?", now)
      .toArray()[0];
    if ((live?.n ?? 0) > 0) return;
    this.storage.sql.exec("DELETE FROM herdless_leases");
    this.tables.drop(LEGACY_COUNTER_TABLE);
  }

  /** The last token issued here: the counter's row, or the counter table of an earlier version. */
  private lastToken(): number | undefined {
    const row = this.tables.has("herdless_leases")
      ? this.storage.sql
          .exec<{ token: number }>("SELECT token FROM herdless_leases WHERE key = ?", COUNTER_KEY)
          .toArray()[0]
      : undefined;
    const legacy = this.tables.has(LEGACY_COUNTER_TABLE)
      ? this.storage.sql
          .exec<{ last_token: number }>(`SELECT last_token FROM ${LEGACY_COUNTER_TABLE} WHERE id = 1`)
          .toArray()[0]
      : undefined;
    if (row === undefined && legacy === undefined) return undefined;
    return Math.max(row?.token ?? 0, legacy?.last_token ?? 0);
  }
}

/** The key of the token counter's row in the leases table: no cache key is empty. */
const COUNTER_KEY = "";
/** Where versions before the counter's row kept it. */
const LEGACY_COUNTER_TABLE = "herdless_lease_counter";

function checkTtl(ttlMs: number): void {
  if (!(Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw new HerdlessError(
      "CONFIG_INVALID",
      `lease ttlMs must be a positive number of milliseconds, got ${String(ttlMs)}`,
    );
  }
}
