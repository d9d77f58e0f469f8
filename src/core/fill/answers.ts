import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import { writtenAfter, type Entry } from "../http/entry.ts";
import type { FillRequest } from "./coordinator.ts";
import { applyPurge } from "../admin/purge.ts";
import { headerList } from "../http/http.ts";
import { lookup, type LookupResult } from "../store/lookup.ts";
import type { Store } from "../store/store.ts";
import { refreshAheadDue } from "./refresh-ahead.ts";

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
export async function storedLook(store: Store, request: FillRequest): Promise<Pick<LookupResult, "entry" | "kept">> {
  const { entry, kept } = await lookup(store, request.primary, request.key, headerList(request.headers));
  return { entry: request.purges ? applyPurge(entry, request.primary, request.purges) : entry, kept };
}
