/** The list of an object's tables that its parts share: read once, kept up to date by the parts. */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { SqlTables } from "../../src/cloudflare/sql-tables.ts";

describe("SqlTables.ofObject", () => {
  it("knows the tables that were there, and those its parts make or drop, without asking SQLite again", async () => {
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(`tables-${crypto.randomUUID()}`));
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("CREATE TABLE before_t (k TEXT)");
      const tables = SqlTables.ofObject(state.storage);
      expect([tables.has("before_t"), tables.has("later_t")]).toEqual([true, false]);
      tables.ensure("later_t", "(k TEXT)");
      expect(tables.has("later_t")).toBe(true);
      tables.drop("before_t");
      expect(tables.has("before_t")).toBe(false);
      // One made behind the list's back is not seen: the object's parts make theirs through it.
      state.storage.sql.exec("CREATE TABLE behind_t (k TEXT)");
      expect(tables.has("behind_t")).toBe(false);
      // A part's own list (the default) asks again.
      expect(new SqlTables(state.storage).has("behind_t")).toBe(true);
      const names = state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%_t'")
        .toArray()
        .map((row) => row.name)
        .sort();
      expect(names).toEqual(["behind_t", "later_t"]);
    });
  });
});
