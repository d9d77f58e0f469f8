import type { Clock } from "../core/clock.ts";
import { DEFAULT_MAX_ENTRY_BYTES } from "../core/config/fields.ts";
import { entryMeta, readableEntryMeta, type Entry } from "../core/http/entry.ts";
import { concatBytes } from "../core/http/http.ts";
import type { Store } from "../core/store/store.ts";
import { SqlTables } from "./sql-tables.ts";

/** Bodies stored by default: the same as `cache.maxEntryBytes`'s default. */
export const DEFAULT_MAX_BODY_BYTES = DEFAULT_MAX_ENTRY_BYTES;
/**
 * SQLite-backed Durable Objects cap a string, BLOB or row at 2 MB (2,000,000 bytes): a
 * body is kept as rows of at most this many bytes, so the row (chunk plus key) stays below.
 */
export const DO_CHUNK_BYTES = 1024 * 1024;
/** What one object may reasonably hold for one entry (an object's storage is 10 GB in all). */
const MAX_BODY_LIMIT_BYTES = 128 * 1024 * 1024;

/**
 * The variants one object keeps of its URL. A page that varies on a header a client writes
 * freely (`Vary: User-Agent`, `Cookie`-less `Vary: X-Anything`) lets anyone store a new copy
 * per value, each up to {@link DEFAULT_MAX_BODY_BYTES}, until the object's 10 GB and every
 * write after fail; the Node LRU and Redis are bounded by size, this store by count. Past it
 * the variants filled longest ago go first (lowest token), as an LRU would let them.
 */
export const DEFAULT_MAX_ENTRIES = 256;

export interface DurableObjectStoreOptions {
  /** Entries (variants of the object's URL) kept; past it the oldest fills go. Default {@link DEFAULT_MAX_ENTRIES}. */
  maxEntries?: number;
  /**
   * Bodies larger than this are refused: `put` returns false and writes nothing, and the
   * caller streams the response through uncached. Default 25 MiB, at most 128 MiB.
   */
  maxBodyBytes?: number;
  /** Table-name prefix, so two stores can share one object's database. */
  prefix?: string;
  /** The object's tables, when its parts share them (SqlTables.ofObject). Default: this store's own. */
  tables?: SqlTables;
}

/**
 * A {@link Store} in a Durable Object's SQLite database (`ctx.storage.sql`): the copy the
 * key's coordinator keeps, which survives eviction and serves every data center.
 *
 * An entry is one row: its metadata, and its body when that fits in one row (at most
 * {@link DO_CHUNK_BYTES} with the metadata; the platform caps a row at 2 MB). A larger body
 * goes to a second table, split in rows of {@link DO_CHUNK_BYTES}, so bodies of tens of MB
 * fit; the entry's row then records its body's length and chunk count, and a body that does
 * not add up is a miss. Reading or fencing on metadata selects no body column. Every key has
 * an object of its own, so the chunk table of a key whose bodies are small is never made:
 * a new key's first write makes one table, not two (bench/README.md, cold misses). All work is
 * synchronous SQL inside one `transactionSync`, so no other request interleaves between the
 * token check and the write, and an entry's rows are written or replaced all at once:
 * fencing is exact here (unlike the Cache API). SQL rather than the KV API because cache
 * keys can be longer than a KV key may be.
 *
 * Layout version 3 (tables `<prefix>_entry`, with a `body` column for a body kept in the row,
 * and `<prefix>_entry_chunk`, each made by its first write: see {@link SqlTables}). A row
 * whose `body` is NULL has its body in chunks, as every row of version 2 has: an entry table
 * of version 2 is read as it is and given the `body` column by this version's first write
 * to it; version 2 reading a row of version 3 finds chunks that do not add up (a miss, the
 * key refetched once) and writes NULL bodies, which this version reads from the chunks.
 * The version-1 tables (`<prefix>_entry_meta`, `<prefix>_entry_body`) are dropped when
 * the object starts: their entries are refetched once, and an older herdless rolled back
 * onto this object finds empty tables rather than entries it cannot read.
 *
 * @example
 * export class KeyCoordinatorObject extends DurableObject<Env> {
 *   private readonly entries = new DurableObjectStore(this.ctx.storage, systemClock);
 * }
 */
export class DurableObjectStore implements Store {
  private readonly entries: string;
  private readonly chunks: string;
  private readonly maxBodyBytes: number;
  private readonly maxEntries: number;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly clock: Clock,
    options: DurableObjectStoreOptions = {},
  ) {
    const prefix = options.prefix ?? "herdless";
    if (!/^[a-z_][a-z0-9_]*$/.test(prefix))
      throw new TypeError(`DurableObjectStore prefix must match [a-z_][a-z0-9_]* (got ${JSON.stringify(prefix)})`);
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isInteger(this.maxBodyBytes) || this.maxBodyBytes < 0 || this.maxBodyBytes > MAX_BODY_LIMIT_BYTES) {
      throw new RangeError(
        `DurableObjectStore maxBodyBytes must be an integer from 0 to ${MAX_BODY_LIMIT_BYTES} (got ${this.maxBodyBytes})`,
      );
    }
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1)
      throw new RangeError(`DurableObjectStore maxEntries must be a positive integer (got ${this.maxEntries})`);
    this.entries = `${prefix}_entry`;
    this.chunks = `${prefix}_entry_chunk`;
    this.tables = options.tables ?? new SqlTables(storage);
    // Runs in the constructor, before any request is delivered.
    this.tables.drop(`${prefix}_entry_meta`);
    this.tables.drop(`${prefix}_entry_body`);
  }

  private readonly tables: SqlTables;
  /** Whether the entry table has the `body` column of layout 3; undefined until looked up. */
  private bodyColumn: boolean | undefined;

  /** Asked once per part, and only of an entry table that exists (a version-2 table has no `body`). */
  private hasBodyColumn(): boolean {
    this.bodyColumn ??= this.storage.sql
      .exec<{ name: string }>(`PRAGMA table_info(${this.entries})`)
      .toArray()
      .some((column) => column.name === "body");
    return this.bodyColumn;
  }

  async get(key: string): Promise<Entry | undefined> {
    if (!this.tables.has(this.entries)) return undefined;
    const body = this.hasBodyColumn() ? "body" : "NULL AS body";
    const row = this.storage.sql
      .exec<{
        meta: string;
        delete_at: number;
        bytes: number;
        chunks: number;
        body: ArrayBuffer | null;
      }>(`SELECT meta, delete_at, bytes, chunks, ${body} FROM ${this.entries} WHERE key = ?`, key)
      .toArray()[0];
    if (!row) return undefined;
    // An entry of another format version (written before a deploy) or damaged is a miss.
    const meta = readableEntryMeta(row.meta);
    if (!meta || this.clock.now() >= row.delete_at) {
      this.remove(key);
      return undefined;
    }
    if (row.body !== null) {
      if (row.body.byteLength !== row.bytes || row.chunks !== 0) {
        this.remove(key);
        return undefined;
      }
      return { ...meta, body: new Uint8Array(row.body) };
    }
    if (!this.tables.has(this.chunks)) {
      // No chunk was ever written here: only an empty body adds up.
      if (row.bytes !== 0 || row.chunks !== 0) {
        this.remove(key);
        return undefined;
      }
      return { ...meta, body: new Uint8Array(0) };
    }
    const parts = this.storage.sql
      .exec<{ body: ArrayBuffer }>(`SELECT body FROM ${this.chunks} WHERE key = ? ORDER BY seq`, key)
      .toArray()
      .map((part) => new Uint8Array(part.body));
    // Written in one transaction, so this holds unless the database was edited by hand.
    if (parts.length !== row.chunks || parts.reduce((n, part) => n + part.byteLength, 0) !== row.bytes) {
      this.remove(key);
      return undefined;
    }
    return { ...meta, body: concatBytes(parts, row.bytes) };
  }

  /** Returns false for a fenced-out writer and for a body above `maxBodyBytes`. */
  async put(entry: Entry): Promise<boolean> {
    return this.putNow(entry);
  }

  /** Whether {@link put} would write `entry` now: its body fits and no newer token holds the key. */
  accepts(entry: Entry): boolean {
    if (entry.body.byteLength > this.maxBodyBytes) return false;
    if (!this.tables.has(this.entries)) return true;
    const current = this.storage.sql
      .exec<{ token: number; delete_at: number }>(
        `SELECT token, delete_at FROM ${this.entries} WHERE key = ?`,
        entry.key,
      )
      .toArray()[0];
    return !(current && current.token > entry.token && this.clock.now() < current.delete_at);
  }

  /** {@link put}, synchronously. */
  putNow(entry: Entry): boolean {
    return this.storage.transactionSync(() => {
      if (!this.accepts(entry)) return false;
      const existed = this.tables.has(this.entries);
      this.tables.ensure(
        this.entries,
        "(key TEXT PRIMARY KEY, token INTEGER NOT NULL, delete_at INTEGER NOT NULL, meta TEXT NOT NULL, bytes INTEGER NOT NULL, chunks INTEGER NOT NULL, body BLOB)",
      );
      if (existed && !this.hasBodyColumn()) {
        // A version-2 table: given the column once, its rows (body NULL) still read from their chunks.
        this.storage.sql.exec(`ALTER TABLE ${this.entries} ADD COLUMN body BLOB`);
        this.bodyColumn = true;
      } else if (!existed) this.bodyColumn = true;
      const meta = JSON.stringify(entryMeta(entry));
      const inRow = fitsInRow(entry.body.byteLength, meta);
      const count = inRow ? 0 : Math.ceil(entry.body.byteLength / DO_CHUNK_BYTES);
      this.storage.sql.exec(
        `INSERT OR REPLACE INTO ${this.entries} (key, token, delete_at, meta, bytes, chunks, body) VALUES (?, ?, ?, ?, ?, ?, ?)`,
        entry.key,
        entry.token,
        entry.deleteAt,
        meta,
        entry.body.byteLength,
        count,
        inRow ? entry.body : null,
      );
      // A key that never had a large body has no chunk table: nothing to clear, nothing to make.
      if (this.tables.has(this.chunks)) this.storage.sql.exec(`DELETE FROM ${this.chunks} WHERE key = ?`, entry.key);
      if (count > 0)
        this.tables.ensure(
          this.chunks,
          "(key TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (key, seq))",
        );
      for (let seq = 0; seq < count; seq++) {
        const part = entry.body.subarray(seq * DO_CHUNK_BYTES, (seq + 1) * DO_CHUNK_BYTES);
        this.storage.sql.exec(`INSERT INTO ${this.chunks} (key, seq, body) VALUES (?, ?, ?)`, entry.key, seq, part);
      }
      this.keepAtMostMaxEntries(entry.key);
      return true;
    });
  }

  async delete(key: string): Promise<boolean> {
    return this.remove(key);
  }

  /** Drops every entry (each variant of the object's URL); returns how many. */
  deleteAll(): number {
    if (!this.tables.has(this.entries)) return 0;
    return this.storage.transactionSync(() => {
      if (this.tables.has(this.chunks)) this.storage.sql.exec(`DELETE FROM ${this.chunks}`);
      return this.storage.sql.exec(`DELETE FROM ${this.entries}`).rowsWritten;
    });
  }

  /** Drops every entry past its deleteAt; returns how many. For an alarm to call. */
  deleteExpired(): number {
    if (!this.tables.has(this.entries)) return 0;
    return this.storage.transactionSync(() => {
      const now = this.clock.now();
      if (this.tables.has(this.chunks))
        this.storage.sql.exec(
          `DELETE FROM ${this.chunks} WHERE key IN (SELECT key FROM ${this.entries} WHERE delete_at <= ?)`,
          now,
        );
      return this.storage.sql.exec(`DELETE FROM ${this.entries} WHERE delete_at <= ?`, now).rowsWritten;
    });
  }

  /** The earliest deleteAt of any stored entry, to schedule the next cleanup alarm. */
  nextDeleteAt(): number | undefined {
    if (!this.tables.has(this.entries)) return undefined;
    const row = this.storage.sql
      .exec<{ at: number | null }>(`SELECT MIN(delete_at) AS at FROM ${this.entries}`)
      .toArray()[0];
    return row?.at ?? undefined;
  }

  /** Drops the entries filled longest ago (lowest token) past {@link DEFAULT_MAX_ENTRIES}, never `kept`. */
  private keepAtMostMaxEntries(kept: string): void {
    const count = this.storage.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${this.entries}`).one().n;
    if (count <= this.maxEntries) return;
    const oldest = this.storage.sql
      .exec<{ key: string }>(
        `SELECT key FROM ${this.entries} WHERE key != ? ORDER BY token ASC LIMIT ?`,
        kept,
        count - this.maxEntries,
      )
      .toArray();
    for (const { key } of oldest) {
      if (this.tables.has(this.chunks)) this.storage.sql.exec(`DELETE FROM ${this.chunks} WHERE key = ?`, key);
      this.storage.sql.exec(`DELETE FROM ${this.entries} WHERE key = ?`, key);
    }
  }

  private remove(key: string): boolean {
    if (!this.tables.has(this.entries)) return false;
    return this.storage.transactionSync(() => {
      if (this.tables.has(this.chunks)) this.storage.sql.exec(`DELETE FROM ${this.chunks} WHERE key = ?`, key);
      return this.storage.sql.exec(`DELETE FROM ${this.entries} WHERE key = ?`, key).rowsWritten > 0;
    });
  }
}

/**
 * Whether a body goes in its entry's row: the row (body, metadata as UTF-8, at most 3 bytes
 * per UTF-16 unit, and the key) must stay under the platform's 2 MB, and a chunk leaves room.
 */
function fitsInRow(bodyBytes: number, meta: string): boolean {
  return bodyBytes + meta.length * 3 <= DO_CHUNK_BYTES;
}
