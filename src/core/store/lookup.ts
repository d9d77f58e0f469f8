import type { Entry } from "../http/entry.ts";
import type { HeaderReader } from "../http/http.ts";
import { variantKey } from "../http/key.ts";
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
    const entry = await store.get(known);
    return { key: known, entry, varyMiss: entry === undefined };
  }
  const found = await store.get(primary);
  if (!found || found.vary.length === 0) return { key: primary, entry: found, varyMiss: false };
  const key = variantKey(primary, found.vary, request);
  const entry = await store.get(key);
  return { key, entry, varyMiss: entry === undefined };
}
