import type { Clock } from "../core/clock.ts";
import { BACKOFF_FORMAT_VERSION, type BackoffRecord, type BackoffStore } from "../core/guard/key-backoff.ts";
import { SqlTables } from "./sql-tables.ts";

const TABLE = "herdless_backoff";

/**
 * A {@link BackoffStore} in the key coordinator object's SQLite storage: the object is one
 * per key for the whole deployment, so its backoff holds in every data center, and it
 * survives the object's eviction (an evicted object must not forget a failing key and ask
 * the origin at once). Synchronous SQL: no other request interleaves within a call.
 * A record goes at its `forgetAt` when read, and with the object's cleanup alarm
 * ({@link deleteForgotten}, {@link nextForgetAt}).
 *
 * @example
 * const backoff = new KeyBackoff({ store: new DurableObjectBackoffStore(ctx.storage, clock), config, clock });
 */
export class DurableObjectBackoffStore implements BackoffStore {
  private readonly tables: SqlTables;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly clock: Clock,
    /** The object's tables, when its parts share them (SqlTables.ofObject). */
    tables?: SqlTables,
  ) {
    // Made by the first failure of the key's origin (see SqlTables): most keys never need it.
    this.tables = tables ?? new SqlTables(storage);
    if (!this.tables.has(TABLE)) return;
    // A table made before failed_at (asked_by) was kept gets the column (its rows read as failed at 0, confirmed).
    const columns = storage.sql.exec<{ name: string }>(`PRAGMA table_info(${TABLE})`).toArray();
    if (!columns.some((c) => c.name === "failed_at"))
      storage.sql.exec(`ALTER TABLE ${TABLE} ADD COLUMN failed_at INTEGER NOT NULL DEFAULT 0`);
    if (!columns.some((c) => c.name === "asked_by"))
      storage.sql.exec(`ALTER TABLE ${TABLE} ADD COLUMN asked_by TEXT NOT NULL DEFAULT ''`);
  }

  async get(key: string): Promise<BackoffRecord | undefined> {
    if (!this.tables.has(TABLE)) return undefined;
    const row = this.storage.sql
      .exec<{ v: number; failures: number; until: number; forget_at: number; failed_at: number; asked_by: string }>(
        "SELECT v, failures, until, forget_at, failed_at, asked_by FROM herdless_backoff WHERE key = ?",
        key,
      )
      .toArray()[0];
    if (!row) return undefined;
    // A record of another format, or forgotten: the key starts over.
    if (row.v !== BACKOFF_FORMAT_VERSION || this.clock.now() >= row.forget_at) {
      this.storage.sql.exec("DELETE FROM herdless_backoff WHERE key = ?", key);
      return undefined;
    }
    return {
      v: BACKOFF_FORMAT_VERSION,
      failures: row.failures,
      until: row.until,
      forgetAt: row.forget_at,
      ...(row.failed_at > 0 ? { failedAt: row.failed_at } : {}),
      ...(row.asked_by !== "" ? { askedBy: row.asked_by } : {}),
    };
  }

  async set(key: string, record: BackoffRecord): Promise<void> {
    this.tables.ensure(
      TABLE,
      "(key TEXT PRIMARY KEY, v INTEGER NOT NULL, failures INTEGER NOT NULL, until INTEGER NOT NULL, forget_at INTEGER NOT NULL, failed_at INTEGER NOT NULL DEFAULT 0, asked_by TEXT NOT NULL DEFAULT '')",
    );
    this.storage.sql.exec(
      "INSERT OR REPLACE INTO herdless_backoff (key, v, failures, until, forget_at, failed_at, asked_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
      key,
      record.v,
      record.failures,
      record.until,
      record.forgetAt,
      record.failedAt ?? 0,
      record.askedBy ?? "",
    );
  }

  async delete(key: string): Promise<void> {
    if (!this.tables.has(TABLE)) return;
    this.storage.sql.exec("DELETE FROM herdless_backoff WHERE key = ?", key);
  }

  /** Drops every forgotten record (the object's alarm), so a key gone quiet keeps no storage. */
  deleteForgotten(): void {
    if (!this.tables.has(TABLE)) return;
    this.storage.sql.exec("DELETE FROM herdless_backoff WHERE forget_at <= ?", this.clock.now());
  }

  /** When the next record may go, for the object's cleanup alarm. */
  nextForgetAt(): number | undefined {
    if (!this.tables.has(TABLE)) return undefined;
    const row = this.storage.sql
      .exec<{ at: number | null }>("SELECT MIN(forget_at) AS at FROM herdless_backoff")
      .toArray()[0];
    return row?.at ?? undefined;
  }
}
