import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import { writtenAfter, type Entry } from "../http/entry.ts";
import type { FillRequest } from "./coordinator.ts";
import { applyPurge } from "../admin/purge.ts";
import { headerList } from "../http/http.ts";
import { lookup } from "../store/lookup.ts";
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

/**
 * The entry `request` would be answered from in `store` (its variant, where one is known),
 * with the caller's purges applied.
 *
 * @example
 * const stored = await storedFor(store, request);
 */
export async function storedFor(store: Store, request: FillRequest): Promise<Entry | undefined> {
  const { entry } = await lookup(store, request.primary, request.key, headerList(request.headers));
  return request.purges ? applyPurge(entry, request.primary, request.purges) : entry;
}
