/**
 * One Cache-Status entry (RFC 9211) for this cache. Parameters are written in the RFC's
 * order; `detail` carries herdless's own reason (why stale was served, why 503).
 */
export interface CacheStatus {
  /** Served from cache without going forward (§2.1). */
  hit?: boolean;
  /** Why the request went forward (§2.2). */
  fwd?: "bypass" | "method" | "uri-miss" | "vary-miss" | "miss" | "request" | "stale";
  /** Status the next hop answered (§2.3). */
  fwdStatus?: number;
  /** Remaining freshness in seconds; negative when stale (§2.4). */
  ttlSeconds?: number;
  /** The response was stored (§2.5). */
  stored?: boolean;
  /** The request was collapsed onto another one going forward (§2.6). */
  collapsed?: boolean;
  /** The cache key, when the operator asked for it (§2.7). */
  key?: string;
  detail?: CacheStatusDetail;
}

export type CacheStatusDetail =
  | "stale-while-revalidate"
  | "stale-if-error"
  | "breaker-open"
  | "queue-full"
  | "queue-timeout"
  | "origin-busy"
  | "backoff"
  | "refresh-ahead"
  | "negative"
  | "coordinator-unavailable"
  | "too-large"
  /** A body within `cache.maxEntryBytes` came while the bodies kept to store held `cache.fillBudgetBytes`: streamed, not stored. */
  | "fill-budget"
  | "uncacheable"
  | "origin-error"
  | "purged"
  /** herdless refused the request itself (bad or repeated Host): nothing was looked up or forwarded. */
  | "refused"
  /** A WebSocket handshake past `origin.maxWebSockets` open tunnels: refused, never forwarded. */
  | "tunnel-limit"
  /** `origin.maxWaiting` requests already wait for an origin answer here: answered at once, not held. */
  | "waiting-full";

export const CACHE_NAME = "herdless";

/**
 * Formats a Cache-Status field value.
 *
 * @example
 * formatCacheStatus({ fwd: "uri-miss", fwdStatus: 200, stored: true }); // "herdless; fwd=uri-miss; fwd-status=200; stored"
 */
export function formatCacheStatus(status: CacheStatus): string {
  let out = CACHE_NAME;
  if (status.hit) out += "; hit";
  if (status.fwd) out += `; fwd=${status.fwd}`;
  if (status.fwdStatus !== undefined) out += `; fwd-status=${status.fwdStatus}`;
  if (status.ttlSeconds !== undefined) out += `; ttl=${status.ttlSeconds}`;
  if (status.stored) out += "; stored";
  if (status.collapsed) out += "; collapsed";
  if (status.key !== undefined) out += `; key=${JSON.stringify(status.key)}`;
  if (status.detail) out += `; detail=${status.detail}`;
  return out;
}

/** Remaining freshness of an entry in whole seconds (negative once stale). */
export function ttlSeconds(staleAt: number, now: number): number {
  return Math.floor((staleAt - now) / 1000);
}
