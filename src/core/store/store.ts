import type { Entry } from "../http/entry.ts";

/**
 * A dumb store: it knows keys and absolute instants, nothing of HTTP.
 * Every implementation passes `storeConformance` (src/core/store-conformance.ts).
 *
 * Contract:
 * - `get` returns undefined once `now ≥ entry.deleteAt`;
 * - `put` never replaces an entry that carries a higher fencing `token` (a late writer
 *   cannot overwrite a newer entry); it returns whether the entry was written;
 * - `delete` returns whether something was removed.
 */
export interface Store {
  get(key: string): Promise<Entry | undefined>;
  put(entry: Entry): Promise<boolean>;
  delete(key: string): Promise<boolean>;
}
