import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import { writtenAfter, type Entry } from "../http/entry.ts";
import type { FillRequest } from "./coordinator.ts";
import { applyPurge } from "../admin/purge.ts";
import { headerList } from "../http/http.ts";
import { servesFields } from "../http/asked-by.ts";
import { lookup, type LookupResult } from "../store/lookup.ts";
import type { Store } from "../store/store.ts";
import { refreshAheadDue } from "./refresh-ahead.ts";
import type { BackoffCheck, KeyBackoff } from "../guard/key-backoff.ts";

/**
 * Whether the stored entry answers this caller without an origin request: it is fresh (a
 * cached error counts, briefly), and fetched since the caller arrived when the client asked
 * for validation, and out of its refresh-ahead window when the caller came to renew it
 * (another edge renewed it already).
 *
 * @example
 * if (answersCaller(o, request, current, before)) return { kind: "entry", entry: current, collapsed: true, stored: false };
 */
export function answersCaller(
  o: { config: Config; clock: Clock },
  request: FillRequest,
  current: Entry | undefined,
  before: Entry | undefined,
): current is Entry {
  if (current === undefined || o.clock.now() >= current.staleAt) return false;
  if (request.revalidate && !writtenAfter(current, before)) return false;
  return !(request.refreshAhead && dueForRefresh(o, request, current));
}

/** Whether `entry` is in the refresh-ahead window of the caller's route. */
export function dueForRefresh(o: { config: Config; clock: Clock }, request: FillRequest, entry: Entry): boolean {
  return refreshAheadDue(entry, routeFor(o.config, request.path).refreshAhead, o.clock.now());
}

/** A caller's {@link storedAnswer}, looked up again each time it is called. */
export type StoredAnswer = () => Promise<Entry | undefined>;

/**
 * The stored entry that answers this caller ({@link answersCaller}) as a lookup finds it (its
 * variant, invalidation marks and purges applied), or undefined. Never what is stored under
 * the caller's key read alone: that may be an invalidation's bodiless mark, or a variant the
 * URL's mark hides.
 *
 * @example
 * const entry = await storedAnswer(o, request, before); // while waiting on another process's flight
 */
export async function storedAnswer(
  o: { config: Config; clock: Clock; store: Store },
  request: FillRequest,
  before: Entry | undefined,
): Promise<Entry | undefined> {
  const entry = await storedFor(o.store, request);
  return answersCaller(o, request, entry, before) ? entry : undefined;
}

/**
 * The entry `request` would be answered from in `store` (its variant, where one is known),
 * with the caller's purges applied.
 *
 * @example
 * const stored = await storedFor(store, request);
 */
export async function storedFor(store: Store, request: FillRequest): Promise<Entry | undefined> {
  return (await storedLook(store, request)).entry;
}

/**
 * {@link storedFor}, with the selectors the URL's copies keep (lookup.ts `kept`) for the
 * answer a flight stores next.
 *
 * @example
 * const { entry, kept } = await storedLook(store, request);
 */
export async function storedLook(
  store: Store,
  request: FillRequest,
): Promise<Pick<LookupResult, "entry" | "kept" | "key">> {
  const found = await lookup(store, request.primary, request.key, headerList(request.headers));
  const { kept, key } = found;
  // An unconfirmed error (asked-by.ts) is no answer to another request: its fill asks the origin.
  const other = found.entry?.askedBy !== undefined && !(await servesFields(found.entry, request.headers));
  const entry = other ? undefined : found.entry;
  return { entry: request.purges ? applyPurge(entry, request.primary, request.purges) : entry, kept, key };
}

/** What a fill asked of its key's shared state before deciding (see {@link look}). */
export type Look = { stored: Promise<Entry | undefined>; backoff: Promise<BackoffCheck> | undefined };

/**
 * The key's entry and backoff, asked for side by side (one round trip to Redis, not two):
 * a flight needs both before it queues for the lease. A fill the entry answers wastes the
 * backoff's read, shared by the process's callers of the key (KeyBackoff.precheck); none
 * is made while the process runs a flight for the key (`leads` false): the caller joins it.
 *
 * @example
 * const { stored, backoff } = look(store, keyBackoff, request, true);
 */
export function look(store: Store, backoff: KeyBackoff, request: FillRequest, leads: boolean): Look {
  return { stored: storedFor(store, request), backoff: leads ? backoff.precheck(request.key) : undefined };
}

/**
 * The key's entry and backoff, read side by side once the lease is (being) taken.
 *
 * @example
 * const [{ entry, kept }, checked] = await lookUnderLease(store, keyBackoff, request);
 */
export function lookUnderLease(
  store: Store,
  backoff: KeyBackoff,
  request: FillRequest,
): Promise<[Pick<LookupResult, "entry" | "kept" | "key">, BackoffCheck]> {
  return Promise.all([storedLook(store, request), backoff.check(request.key)]);
}
