import type { Entry } from "../http/entry.ts";

/**
 * Whether a fresh entry is in the refresh-ahead window: the last `share` of its freshness
 * lifetime (RFC 9111 §4.2: fresh while current_age < freshness_lifetime, so the lifetime is
 * `staleAt − storedAt + initialAgeMs`). A request then is answered from the entry and renews
 * it in the background, so a key requested steadily never turns stale. A stale entry, a
 * cached error and a `share` of 0 (off) are never due.
 *
 * @example
 * refreshAheadDue(entry, 0.1, now); // true in the last 10 % of the entry's lifetime
 */
export function refreshAheadDue(
  entry: Pick<Entry, "staleAt" | "storedAt" | "initialAgeMs" | "negative">,
  share: number,
  now: number,
): boolean {
  if (share <= 0 || entry.negative || now >= entry.staleAt) return false;
  const lifetimeMs = entry.staleAt - entry.storedAt + entry.initialAgeMs;
  return now >= entry.staleAt - share * lifetimeMs;
}
