/**
 * The tables of a Durable Object's SQLite database as one part of the object sees them: read
 * once when the part is built, and each created on its first write, in that write's
 * transaction. Every cache key has an object of its own, so a table made when the object
 * starts is made once per key: a new key's first miss paid for five tables (three rows
 * written each, at Cloudflare's rate per row) before anything was known about the key, and
 * a table the key never needs (its backoff, while the origin answers) was made all the same.
 * Reads of a table not made yet find nothing, without asking SQLite.
 *
 * A table once seen is remembered; one not seen yet is looked up again on each use (another
 * part of the object, or a test, may have made it). Something that drops tables behind a
 * part's back (`storage.deleteAll()`) needs a new part, as a restarted object has.
 *
 * @example
 * const tables = new SqlTables(ctx.storage);
 * if (tables.has("herdless_leases")) ...
 * tables.ensure("herdless_leases", "(key TEXT PRIMARY KEY, token INTEGER NOT NULL)");
 */
export class SqlTables {
  private readonly existing = new Set<string>();

  constructor(private readonly storage: DurableObjectStorage) {}

  has(name: string): boolean {
    if (this.existing.has(name)) return true;
    const found =
      this.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", name).toArray().length > 0;
    if (found) this.existing.add(name);
    return found;
  }

  /** Creates `name` with `columns` (the parenthesised definition) unless it exists. */
  ensure(name: string, columns: string): void {
    if (this.existing.has(name)) return;
    this.storage.sql.exec(`CREATE TABLE IF NOT EXISTS ${name} ${columns}`);
    this.existing.add(name);
  }

  /** Drops `name` if it exists (a table of an older layout). */
  drop(name: string): void {
    if (!this.has(name)) return;
    this.existing.delete(name);
    this.storage.sql.exec(`DROP TABLE IF EXISTS ${name}`);
  }
}
