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
 * part of the object, or a test, may have made it), unless the instance is the one of the
 * whole object ({@link SqlTables.ofObject}): it reads the list of tables once, and every part
 * of the object makes and drops its tables through it, so a table it does not know does not
 * exist (a new key's miss asked SQLite 18 times whether a table existed, ~1.5 ms of its CPU in
 * local workerd). Something that drops tables behind a part's back (`storage.deleteAll()`)
 * needs a new part, as a restarted object has.
 *
 * @example
 * const tables = SqlTables.ofObject(ctx.storage); // shared by the object's parts
 * if (tables.has("herdless_leases")) ...
 * tables.ensure("herdless_leases", "(key TEXT PRIMARY KEY, token INTEGER NOT NULL)");
 */
export class SqlTables {
  private readonly existing = new Set<string>();
  /** Whether {@link existing} is every table of the database (see ofObject). */
  private complete = false;

  constructor(private readonly storage: DurableObjectStorage) {}

  /**
   * The tables of an object whose parts all share this instance: listed once, then known
   * without asking SQLite again.
   */
  static ofObject(storage: DurableObjectStorage): SqlTables {
    const tables = new SqlTables(storage);
    for (const row of storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'"))
      tables.existing.add(row.name);
    tables.complete = true;
    return tables;
  }

  /** Whether the database has no table at all; false unless this instance is the whole object's. */
  none(): boolean {
    return this.complete && this.existing.size === 0;
  }

  has(name: string): boolean {
    if (this.existing.has(name)) return true;
    if (this.complete) return false;
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
