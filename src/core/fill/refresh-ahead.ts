import type { Entry } from "../http/entry.ts";
import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import type { FillResult } from "./coordinator.ts";
import type { LeaseManager } from "./lease.ts";

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
  return now < entry.staleAt && now >= refreshAheadFrom(entry, share);
}

/**
 * When the refresh-ahead window of a fresh entry opens ({@link refreshAheadDue} from then
 * until `staleAt`); Infinity when it never does (`share` 0, a cached error).
 *
 * @example
 * refreshAheadFrom({ storedAt: 0, staleAt: 10_000, initialAgeMs: 0, negative: false }, 0.1); // 9000
 */
export function refreshAheadFrom(
  entry: Pick<Entry, "staleAt" | "storedAt" | "initialAgeMs" | "negative">,
  share: number,
): number {
  if (share <= 0 || entry.negative) return Infinity;
  const lifetimeMs = entry.staleAt - entry.storedAt + entry.initialAgeMs;
  return entry.staleAt - share * lifetimeMs;
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
 * The copy a foreground caller that found the key's lease busy answers with, when the holder
 * (another process of a fleet) is renewing it ahead ({@link renewedAhead}, with the holder's
 * mark: LeaseManager.renewing). A process that saw no request in the refresh-ahead window
 * does not know a renewal runs elsewhere; without this, its callers would wait on the lease
 * once the copy expires. Read only then: a fresh copy, a background caller, a route without
 * refresh-ahead or a manager without marks never cost the read.
 *
 * @example
 * const copy = await renewedByHolder({ leases, config, clock }, request, before);
 * if (copy) return { kind: "entry", entry: copy, collapsed: false, stored: false };
 */
export async function renewedByHolder(
  o: { leases: LeaseManager; config: Config; clock: Clock },
  request: { key: string; path: string; priority: "foreground" | "background" },
  copy: Entry | undefined,
): Promise<Entry | undefined> {
  if (!o.leases.renewing || !copy || request.priority !== "foreground" || o.clock.now() < copy.staleAt) return;
  const share = routeFor(o.config, request.path).refreshAhead;
  if (share <= 0) return;
  const renewing = await o.leases.renewing(request.key).catch(() => undefined);
  return renewedAhead(copy, share, renewing) ? copy : undefined;
}

/** The expired copy as the answer while a renewal of it runs: the edge follows that renewal (engine.ts). */
export function renewingAnswer(entry: Entry): Extract<FillResult, { kind: "entry" }> {
  return { kind: "entry", entry, collapsed: false, stored: false, renewing: true };
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
