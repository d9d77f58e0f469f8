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

/**
 * Whether a copy that has expired may still answer because a refresh-ahead is renewing it:
 * `renewing` is the expiry of the copy that the running renewal replaces (undefined when
 * none runs), and this copy expired no later. That is nginx's `proxy_cache_use_stale
 * updating`, limited to renewals begun ahead of expiry: refresh-ahead starts a renewal in
 * the last part of the lifetime so that nobody waits, and when the renewal takes longer than
 * the window (a slow origin, a loaded edge) the requests after expiry would otherwise queue
 * on it. The operator's `refreshAhead` is the permission to serve stale (RFC 9111 §4.2.4,
 * configuration), for no longer than the renewal runs, which its lease and the origin
 * timeout bound. `must-revalidate` and cached errors never qualify.
 *
 * @example
 * if (renewedAhead(entry, route.refreshAhead, marks.renewing(key, now))) serveStale(entry);
 */
export function renewedAhead(
  entry: Pick<Entry, "staleAt" | "negative" | "mustRevalidate">,
  share: number,
  renewing: number | undefined,
): boolean {
  if (share <= 0 || entry.negative || entry.mustRevalidate || renewing === undefined) return false;
  return entry.staleAt <= renewing;
}

/**
 * The refresh-ahead flights a coordinator runs, by key, with the expiry of the copy each
 * renews (for {@link renewedAhead}).
 *
 * @example
 * const result = await renewals.run(key, stored.staleAt, () => fetchUnderLease(request));
 */
export class RenewalsAhead {
  private readonly renews = new Map<string, number>();

  async run<T>(key: string, renews: number, work: () => Promise<T>): Promise<T> {
    this.renews.set(key, renews);
    try {
      return await work();
    } finally {
      this.renews.delete(key);
    }
  }

  /** The expiry of the copy the running refresh-ahead of `key` renews, if one runs. */
  renewing(key: string): number | undefined {
    return this.renews.get(key);
  }
}
