import { notInvalidated, type Entry } from "../http/entry.ts";
import type { HeaderReader } from "../http/http.ts";
import { variantKey } from "../http/key.ts";
import { varyPointer } from "../http/response-entry.ts";
import type { Store } from "./store.ts";

export interface LookupResult {
  /** The key this request's entry lives under (its variant key once a Vary is known). */
  key: string;
  entry: Entry | undefined;
  /** A response for the URL is stored, but not for this request's variant. */
  varyMiss: boolean;
}

/**
 * Finds the entry a request would be served from: the primary key's entry, or, when that
 * entry says the response varies, the entry of the request's own variant (RFC 9111 §4.1).
 * `known` is a variant key the caller already computed (the primary key otherwise).
 */
export async function lookup(
  store: Store,
  primary: string,
  known: string,
  request: HeaderReader,
): Promise<LookupResult> {
  if (known !== primary) {
    const [found, entry] = await Promise.all([store.get(primary), store.get(known)]);
    const valid = notInvalidated(entry, found);
    return { key: known, entry: valid, varyMiss: valid === undefined };
  }
  const found = await store.get(primary);
  if (!found || found.vary.length === 0) return { key: primary, entry: notInvalidated(found, found), varyMiss: false };
  const key = variantKey(primary, found.vary, request);
  const entry = notInvalidated(await store.get(key), found);
  return { key, entry, varyMiss: entry === undefined };
}

/**
 * The entry a refused write lost to (a newer one under `key`), when it can be served in its
 * place: not an invalidation's bodiless mark nor a Vary pointer, nor a variant stored before
 * the URL's mark. Undefined otherwise, and the writer answers with its own response, unstored.
 */
export async function servableWinner(store: Store, key: string, primary: string): Promise<Entry | undefined> {
  const [held, atPrimary] = await Promise.all([store.get(key), key === primary ? undefined : store.get(primary)]);
  if (!held || (key === primary && held.vary.length > 0)) return undefined;
  return notInvalidated(held, key === primary ? held : atPrimary);
}

/**
 * Writes the Vary pointer of `entry` (a variant) under `primary`, keeping the instant the
 * URL was last invalidated: a pointer written without it would make the variants stored
 * before the invalidation servable again. For the same reason the pointer is kept as long
 * as the longest-kept variant written under it, not only as long as the last one: the mark
 * an invalidation leaves over it must outlive every variant it hides.
 */
export async function putVaryPointer(store: Store, entry: Entry, primary: string): Promise<boolean> {
  const previous = await store.get(primary);
  const pointer = varyPointer(entry, primary, previous?.invalidatedAt);
  return store.put({ ...pointer, deleteAt: Math.max(pointer.deleteAt, previous?.deleteAt ?? 0) });
}

/**
 * RFC 9111 §4.4: every stored response for the URL of `primary` is invalid from `now`, every
 * variant (this store cannot list them): the entry under the primary key stays, bodiless, as
 * the mark that says so (`invalidatedAt`), until the longest-kept of them would have gone
 * ({@link putVaryPointer}). The
 * variant `request` selects is dropped at once.
 */
export async function invalidateStored(
  store: Store,
  primary: string,
  request: HeaderReader,
  now: number,
): Promise<void> {
  const found = await store.get(primary);
  if (!found) return;
  await store.put({ ...found, body: new Uint8Array(0), invalidatedAt: now });
  if (found.vary.length > 0) await store.delete(variantKey(primary, found.vary, request));
}
