import type { Clock } from "../core/clock.ts";
import { decodeEntryMeta, entryMeta, type Entry } from "../core/http/entry.ts";
import type { Store } from "../core/store/store.ts";

/**
 * SQLite-backed Durable Objects cap a string, BLOB or row at 2 MB (2,000,000 bytes). The
 * body row also holds the key, so the default leaves room for it.
 */
export const DEFAULT_MAX_BODY_BYTES = 1_900_000;
const SQLITE_ROW_LIMIT_BYTES = 2_000_000;

export interface DurableObjectStoreOptions {
  /**
   * Bodies larger than this are refused: `put` returns false and writes nothing, and the
   * caller streams the response through uncached. At most ~2 MB (the SQLite row cap).
   */
  maxBodyBytes?: number;
  /** Table-name prefix, so two stores can share one object's database. */
  prefix?: string;
}

/**
 * A {@link Store} in a Durable Object's SQLite database (`ctx.storage.sql`): the copy the
 * key's coordinator keeps, which survives eviction and serves every data center.
 *
 * Metadata and body sit in two tables, so reading or fencing on metadata never loads the
 * body and the body can use nearly all of the 2 MB row. All work is synchronous SQL inside
 * one `transactionSync`, so no other request interleaves between the token check and the
 * write: fencing is exact here (unlike the Cache API). SQL rather than the KV API because
 * cache keys can be longer than a KV key may be.
 *
 * @example
 * export class KeyCoordinatorObject extends DurableObject<Env> {
 *   private readonly entries = new DurableObjectStore(this.ctx.storage, systemClock);
 * }
 */
export class DurableObjectStore implements Store {
  private readonly meta: string;
  private readonly bodies: string;
  private readonly maxBodyBytes: number;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly clock: Clock,
    options: DurableObjectStoreOptions = {},
  ) {
    const prefix = options.prefix ?? "herdless";
    if (!/^[a-z_][a-z0-9_]*$/.test(prefix))
      throw new TypeError(`DurableObjectStore prefix must match [a-z_][a-z0-9_]* (got ${JSON.stringify(prefix)})`);
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isInteger(this.maxBodyBytes) || this.maxBodyBytes < 0 || this.maxBodyBytes > SQLITE_ROW_LIMIT_BYTES) {
      throw new RangeError(
        `DurableObjectStore maxBodyBytes must be an integer from 0 to ${SQLITE_ROW_LIMIT_BYTES} (got ${this.maxBodyBytes})`,
      );
    }
    this.meta = `${prefix}_entry_meta`;
    this.bodies = `${prefix}_entry_body`;
    // Idempotent and cheap; runs in the constructor, before any request is delivered.
    storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS ${this.meta} (key TEXT PRIMARY KEY, token INTEGER NOT NULL, delete_at INTEGER NOT NULL, meta TEXT NOT NULL)`,
    );
    storage.sql.exec(`CREATE TABLE IF NOT EXISTS ${this.bodies} (key TEXT PRIMARY KEY, body BLOB NOT NULL)`);
  }

  async get(key: string): Promise<Entry | undefined> {
    const row = this.storage.sql
      .exec<{ meta: string; delete_at: number }>(`SELECT meta, delete_at FROM ${this.meta} WHERE key = ?`, key)
      .toArray()[0];
    if (!row) return undefined;
    if (this.clock.now() >= row.delete_at) {
      this.remove(key);
      return undefined;
    }
    const body = this.storage.sql
      .exec<{ body: ArrayBuffer }>(`SELECT body FROM ${this.bodies} WHERE key = ?`, key)
      .toArray()[0];
    return { ...decodeEntryMeta(row.meta), body: body ? new Uint8Array(body.body) : new Uint8Array(0) };
  }

  /** Returns false for a fenced-out writer and for a body above `maxBodyBytes`. */
  async put(entry: Entry): Promise<boolean> {
    const keyBytes = new TextEncoder().encode(entry.key).byteLength;
    if (entry.body.byteLength > this.maxBodyBytes || entry.body.byteLength + keyBytes > SQLITE_ROW_LIMIT_BYTES)
      return false;
    return this.storage.transactionSync(() => {
      const current = this.storage.sql
        .exec<{ token: number; delete_at: number }>(
          `SELECT token, delete_at FROM ${this.meta} WHERE key = ?`,
          entry.key,
        )
        .toArray()[0];
      if (current && current.token > entry.token && this.clock.now() < current.delete_at) return false;
      this.storage.sql.exec(
        `INSERT OR REPLACE INTO ${this.meta} (key, token, delete_at, meta) VALUES (?, ?, ?, ?)`,
        entry.key,
        entry.token,
        entry.deleteAt,
        JSON.stringify(entryMeta(entry)),
      );
      this.storage.sql.exec(`INSERT OR REPLACE INTO ${this.bodies} (key, body) VALUES (?, ?)`, entry.key, entry.body);
      return true;
    });
  }

  async delete(key: string): Promise<boolean> {
    return this.remove(key);
  }

  /** Drops every entry past its deleteAt; returns how many. For an alarm to call. */
  deleteExpired(): number {
    return this.storage.transactionSync(() => {
      const now = this.clock.now();
      this.storage.sql.exec(
        `DELETE FROM ${this.bodies} WHERE key IN (SELECT key FROM ${this.meta} WHERE delete_at <= ?)`,
        now,
      );
      return this.storage.sql.exec(`DELETE FROM ${this.meta} WHERE delete_at <= ?`, now).rowsWritten;
    });
  }

  /** The earliest deleteAt of any stored entry, to schedule the next cleanup alarm. */
  nextDeleteAt(): number | undefined {
    const row = this.storage.sql
      .exec<{ at: number | null }>(`SELECT MIN(delete_at) AS at FROM ${this.meta}`)
      .toArray()[0];
    return row?.at ?? undefined;
  }

  private remove(key: string): boolean {
    return this.storage.transactionSync(() => {
      this.storage.sql.exec(`DELETE FROM ${this.bodies} WHERE key = ?`, key);
      return this.storage.sql.exec(`DELETE FROM ${this.meta} WHERE key = ?`, key).rowsWritten > 0;
    });
  }
}
