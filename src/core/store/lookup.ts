import { ENTRY_FORMAT_VERSION, notInvalidated, type Entry } from "../http/entry.ts";
import type { HeaderReader } from "../http/http.ts";
import { namedUntil, variantKey, type SelectorSource } from "../http/key.ts";
import { varyPointer } from "../http/response-entry.ts";
import type { Store } from "./store.ts";

export interface LookupResult {
  /** The key this request's entry lives under (its variant key once a Vary is known). */
  key: string;
  entry: Entry | undefined;
  /** A response for the URL is stored, but not for this request's variant. */
  varyMiss: boolean;
  /**
   * Where the selectors the URL's copies keep are read (key.ts keptSelectors): the entry under
   * the primary key. A new answer for the URL is selected on them too.
   */
  kept: SelectorSource;
  /**
   * RFC 9111 §4.4: when the URL was last written to, as the mark under the primary key says
   * (an unsafe request's success, {@link invalidateStored}); absent without one.
   */
  invalidatedAt?: number;
}

/**
 * Finds the entry a request would be served from: the primary key's entry, or, when that
 * entry says the response varies, the entry of the request's own variant (RFC 9111 §4.1).
 * `known` is a variant key the caller already computed (the primary key otherwise).
 */
export async function lookup(
  store: Pick<Store, "get">,
  primary: string,
  known: string,
  request: HeaderReader,
): Promise<LookupResult> {
  if (known !== primary) {
    const [found, entry] = await Promise.all([store.get(primary), store.get(known)]);
    const valid = notInvalidated(entry, found);
    // The pointer's selectors, or (the pointer gone before its variants) the variant's own.
    const kept = found ?? (entry ? { vary: entry.vary, namedUntil: namedUntil(entry, undefined) } : UNSELECTED);
    return { key: known, entry: valid, varyMiss: valid === undefined, kept, ...markOf(found) };
  }
  const found = await store.get(primary);
  if (!found || found.vary.length === 0)
    return { key: primary, entry: notInvalidated(found, found), varyMiss: false, kept: UNSELECTED, ...markOf(found) };
  const key = variantKey(primary, found.vary, request);
  const entry = notInvalidated(await store.get(key), found);
  return { key, entry, varyMiss: entry === undefined, kept: found, ...markOf(found) };
}

/** The instant of the write the entry under a primary key marks, as a {@link LookupResult} field. */
function markOf(atPrimary: Entry | undefined): Pick<LookupResult, "invalidatedAt"> {
  return atPrimary?.invalidatedAt === undefined ? {} : { invalidatedAt: atPrimary.invalidatedAt };
}

/** The selectors of a URL that has no copy selected on any. */
const UNSELECTED: SelectorSource = { vary: [] };

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
  const pointer = varyPointer(entry, primary, previous);
  return store.put({ ...pointer, deleteAt: Math.max(pointer.deleteAt, previous?.deleteAt ?? 0) });
}

/**
 * How long an invalidation's mark outlives the write, at least: longer than an origin call
 * that was already running may still take to end and be stored (`origin.timeoutMs` for its
 * head plus `origin.streamTimeoutMs` for its body: 310 s by default).
 */
export const INVALIDATION_MARK_MS = 10 * 60_000;

/**
 * RFC 9111 §4.4: every stored response for the URL of `primary` is invalid from `now`, every
 * variant (this store cannot list them): the entry under the primary key stays, bodiless, as
 * the mark that says so (`invalidatedAt`), until the longest-kept of them would have gone
 * ({@link putVaryPointer}), and at least {@link INVALIDATION_MARK_MS}; a URL with nothing
 * stored gets a mark too, so an origin answer asked for before the write is never stored
 * after it ({@link invalidatedWhileAsked}). The variant `request` selects is dropped at once.
 */
export async function invalidateStored(
  store: Store,
  primary: string,
  request: HeaderReader,
  now: number,
): Promise<void> {
  noteWrite(store, primary, now);
  const found = (await store.get(primary)) ?? invalidationMark(primary, now);
  const deleteAt = Math.max(found.deleteAt, now + INVALIDATION_MARK_MS);
  // The copy was stored by another clock (the key's object, another fleet member): one a few
  // ms ahead of this one would date the copy after the write, and its bodiless mark would be
  // served as the page. A mark covers at least what it was made from.
  const invalidatedAt = Math.max(now, found.storedAt);
  await store.put({ ...found, body: new Uint8Array(0), invalidatedAt, deleteAt });
  if (found.vary.length > 0) await store.delete(variantKey(primary, found.vary, request));
}

/** The writes this process marked in each store (noteWrite): URL primary key → instant. */
const recentWrites = new WeakMap<Store, Map<string, number>>();

/** The most writes remembered per store; the oldest go first. */
const RECENT_WRITES_KEPT = 10_000;

/**
 * Remembers that the URL of `primary` was invalidated in `store` at `at`, for
 * {@link writtenWhileAsked}: in memory, where the flights writing to that store read it
 * without a round trip. A store whose invalidations arrive from another process (a fleet
 * member that heard of a write) is told here too.
 */
export function noteWrite(store: Store, primary: string, at: number): void {
  let writes = recentWrites.get(store);
  if (!writes) recentWrites.set(store, (writes = new Map()));
  const before = writes.get(primary) ?? at;
  writes.delete(primary);
  writes.set(primary, Math.max(at, before));
  for (const [key, when] of writes) {
    if (writes.size <= RECENT_WRITES_KEPT && when > at - INVALIDATION_MARK_MS) break;
    writes.delete(key);
  }
}

/** The instant this process last noted a write to the URL of `primary` in `store` ({@link noteWrite}), if it did. */
export function lastWrite(store: Store, primary: string): number | undefined {
  return recentWrites.get(store)?.get(primary);
}

/**
 * RFC 9111 §4.4: whether this process saw the URL of `primary` written to (invalidated) in
 * `store` after `entry`'s origin request was sent, or in the same millisecond (it may have
 * been sent before the write: {@link notInvalidated} judges a copy stored then the same way).
 * Such an answer may describe the URL as it was before the write: it goes to the callers that
 * asked, and is stored in no tier. Before, a fill still running when a `POST` succeeded stored
 * the old page after the invalidation, fresh for its whole lifetime; and one sent in the
 * write's own millisecond still did.
 */
export function writtenWhileAsked(store: Store, primary: string, entry: Pick<Entry, "requestAt">): boolean {
  return askedBefore(entry, lastWrite(store, primary));
}

/** Whether an answer was asked for before (or in the millisecond of) the write at `writtenAt`. */
export function askedBefore(entry: Pick<Entry, "requestAt">, writtenAt: number | undefined): boolean {
  return writtenAt !== undefined && writtenAt >= entry.requestAt;
}

/**
 * {@link writtenWhileAsked}, or the store's own mark says so (a write another process marked
 * there): for a tier whose reads cost no trip to a shared store, an edge's own.
 */
export async function invalidatedWhileAsked(
  store: Store,
  primary: string,
  entry: Pick<Entry, "requestAt">,
): Promise<boolean> {
  if (writtenWhileAsked(store, primary, entry)) return true;
  return askedBefore(entry, (await store.get(primary))?.invalidatedAt);
}

/**
 * RFC 9111 §4.4 for copies read earlier that are about to stand in for an origin answer
 * (stale-if-error, a busy or backing-off origin): those of `copies` (each a copy of the URL
 * of `primary`) that `store` does not now say the URL was written to since they were stored (a write this process noted, or the mark a write left
 * under the primary key, as a lookup judges it: {@link notInvalidated}). A flight reads the
 * copy when it starts and fails up to `origin.timeoutMs` later; before, a `POST` that
 * succeeded meanwhile did not keep its failure from being hidden behind the copy the write
 * had made obsolete, for the writer's next request too. A store that cannot be read leaves
 * the copies standing: they are what hides the outage, and this process's own notes still
 * apply. The mark is read once for all of them.
 *
 * @example
 * const [stale] = await standingAfterWrites(store, primary, [result.stale]); // none once the URL was written to
 */
export async function standingAfterWrites(store: Store, primary: string, copies: readonly Entry[]): Promise<Entry[]> {
  const written = lastWrite(store, primary);
  const unwritten = copies.filter((copy) => written === undefined || written < copy.storedAt);
  if (unwritten.length === 0) return [];
  const mark = await store.get(primary).catch(() => undefined);
  return unwritten.filter((copy) => notInvalidated(copy, mark) !== undefined);
}

/** The mark of a URL invalidated with nothing stored: an entry no lookup serves. */
function invalidationMark(primary: string, now: number): Entry {
  return {
    v: ENTRY_FORMAT_VERSION,
    key: primary,
    url: primary.slice(primary.indexOf(" ") + 1),
    status: 200,
    headers: [],
    body: new Uint8Array(0),
    requestAt: now,
    storedAt: now,
    initialAgeMs: 0,
    staleAt: now,
    swrUntil: now,
    sieUntil: now,
    deleteAt: now + INVALIDATION_MARK_MS,
    vary: [],
    mustRevalidate: true,
    token: 0,
    tags: [],
    negative: false,
  };
}
