import {
  deltaSecondsMs,
  isBare,
  MAX_DELTA_SECONDS,
  parseCacheControl,
  parseDeltaSecondsMs,
  type Directives,
} from "./cache-control.ts";
import { parseSurrogateControl, parseTargetedCacheControl } from "./targeted-cache-control.ts";
import type { Config, RoutePolicy } from "../config.ts";
import type { HeaderReader } from "./http.ts";
import { parseHttpDate } from "./http-date.ts";

/** What the freshness policy needs to know about one origin response. */
export interface OriginResponseInfo {
  status: number;
  /** The origin response headers. */
  headers: HeaderReader;
  /** When the request was sent (RFC 9111 §4.2.3 request_time), epoch ms. */
  requestAt: number;
  /** When the response arrived (response_time), epoch ms. */
  responseAt: number;
  /**
   * Names of origin header fields dropped as malformed (see `isValidField`). When one of
   * them is a field storage depends on, the response is not stored: what the origin meant
   * by it is unknown.
   */
  droppedFields?: readonly string[];
}

/** Statuses cacheable by default (RFC 9110 §15.1): the only ones given a heuristic lifetime. */
export const HEURISTICALLY_CACHEABLE: ReadonlySet<number> = new Set([
  200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501,
]);

const ONE_DAY_MS = 24 * 3600_000;

/**
 * The longest any stored instant may lie past the response's arrival: RFC 9111 §1.2.2's
 * largest delta-seconds (2^31 s, about 68 years). It also keeps every instant a runtime
 * schedules (Durable Object alarms refuse dates after 2189) representable: an `Expires` in
 * 2286 is simply "as long as possible".
 */
export const MAX_LIFETIME_MS = MAX_DELTA_SECONDS * 1000;

/** The directives that govern this cache, and whether they came from a targeted field (CDN-Cache-Control, Surrogate-Control). */
export interface Governing {
  d: Directives;
  targeted: boolean;
}

/**
 * The directives this cache obeys: CDN-Cache-Control when present, else Cache-Control.
 * RFC 9213 §2.1: a cache that honours CDN-Cache-Control ignores Cache-Control entirely.
 *
 * @example
 * effectiveDirectives(new Headers({ "cache-control": "max-age=5", "cdn-cache-control": "max-age=600" })).get("max-age"); // "600"
 */
export function effectiveDirectives(headers: HeaderReader): Directives {
  return governingDirectives(headers).d;
}

/**
 * RFC 9213 §2.2: the first targeted field in herdless's list with a valid, non-empty value
 * governs, and then Cache-Control and Expires are ignored; an invalid or empty one is
 * ignored entirely. The list: CDN-Cache-Control, then Surrogate-Control (the W3C Edge
 * Architecture field that CDNs honoured before RFC 9213), then Cache-Control.
 */
export function governingDirectives(headers: HeaderReader): Governing {
  const targeted =
    parseTargetedCacheControl(headers.get("cdn-cache-control")) ??
    parseSurrogateControl(headers.get("surrogate-control"));
  if (targeted) return { d: targeted, targeted: true };
  return { d: parseCacheControl(headers.get("cache-control")), targeted: false };
}

/**
 * RFC 9111 §4.2.1: explicit freshness is s-maxage, max-age or Expires (Expires only while
 * Cache-Control governs, RFC 9213 §2.2). A 5xx without it is given only to the requests that
 * waited on its fetch.
 *
 * @example
 * hasExplicitFreshness(new Headers({ "cache-control": "max-age=5" })); // true
 */
export function hasExplicitFreshness(
  headers: HeaderReader,
  governing: Governing = governingDirectives(headers),
): boolean {
  const { d, targeted } = governing;
  return d.has("s-maxage") || d.has("max-age") || (!targeted && headers.get("expires") !== null);
}

/** The absolute instants of a stored response, all epoch ms except {@link initialAgeMs}. */
export interface Lifetimes {
  /** RFC 9111 §4.2.3 corrected_initial_age. */
  initialAgeMs: number;
  /** responseAt + freshness lifetime − initialAge, never before responseAt. */
  staleAt: number;
  /** That instant when it is before responseAt (the response arrived already stale); Entry.expiredAt. */
  expiredAt?: number;
  /** staleAt + stale-while-revalidate window (none when {@link mustRevalidate}). */
  swrUntil: number;
  /** staleAt + stale-if-error window (none when {@link mustRevalidate}). */
  sieUntil: number;
  /** Last servable instant + config.cache.retainStaleMs, and at least staleAt + 1 ms. */
  deleteAt: number;
  /** The origin forbade serving this response stale. */
  mustRevalidate: boolean;
}

/**
 * Freshness lifetime (RFC 9111 §4.2.1 precedence: route.forceTtlMs, s-maxage, max-age,
 * Expires − Date, then the §4.2.2 heuristic), age correction (§4.2.3) and the RFC 5861
 * stale windows plus the route's grace, as absolute instants.
 *
 * @example
 * const t = lifetimes({ status: 200, headers: new Headers({ "cache-control": "max-age=60" }), requestAt: 0, responseAt: 0 }, route, config);
 * t.staleAt; // 60_000
 */
export function lifetimes(res: OriginResponseInfo, route: RoutePolicy, config: Config): Lifetimes {
  const governing = governingDirectives(res.headers);
  const d = governing.d;
  const initialAgeMs = correctedInitialAgeMs(res);
  const mustRevalidate = forbidsStale(d);
  // Windows run from the true stale instant, which is before arrival when the response came in old.
  const trueStaleAt = res.responseAt + freshnessLifetimeMs(res, governing, route) - initialAgeMs;
  const staleAt = Math.max(res.responseAt, trueStaleAt);
  const swrMs = mustRevalidate ? 0 : staleWindowMs(d, "stale-while-revalidate", route.staleWhileRevalidateMs);
  const sieMs = mustRevalidate ? 0 : staleWindowMs(d, "stale-if-error", route.staleIfErrorMs);
  const swrUntil = Math.max(staleAt, trueStaleAt + swrMs);
  const sieUntil = Math.max(staleAt, trueStaleAt + sieMs);
  const deleteAt = Math.max(swrUntil, sieUntil, staleAt) + config.cache.retainStaleMs;
  const latest = res.responseAt + MAX_LIFETIME_MS;
  return {
    initialAgeMs,
    staleAt: Math.min(staleAt, latest - 1),
    // Kept apart: every other reader wants the arrival (a copy is never fresh before it was stored).
    ...(trueStaleAt < res.responseAt ? { expiredAt: trueStaleAt } : {}),
    swrUntil: Math.min(swrUntil, latest - 1),
    sieUntil: Math.min(sieUntil, latest - 1),
    deleteAt: Math.min(Math.max(deleteAt, staleAt + 1), latest),
    mustRevalidate,
  };
}

// RFC 9111 §5.2.2.4: bare no-cache means stale at once. The qualified `no-cache="field"` only
// forbids reusing those fields unvalidated; {@link storedFields} never keeps them, so the rest
// of the response keeps its lifetime.
function freshnessLifetimeMs(res: OriginResponseInfo, governing: Governing, route: RoutePolicy): number {
  const { d, targeted } = governing;
  if (route.forceTtlMs !== undefined && operatorTtlApplies(res.status)) return route.forceTtlMs;
  if (isBare(d, "no-cache")) return 0;
  return (
    directiveLifetimeMs(d, "s-maxage") ??
    directiveLifetimeMs(d, "max-age") ??
    (targeted ? undefined : expiresLifetimeMs(res)) ??
    heuristicLifetimeMs(res, d, route)
  );
}

// RFC 9111 §4.2.1: a present but invalid (or conflicting duplicate) directive makes the response stale
// rather than falling through to a weaker source.
function directiveLifetimeMs(d: Directives, name: "s-maxage" | "max-age"): number | undefined {
  if (!d.has(name)) return undefined;
  return deltaSecondsMs(d, name) ?? 0;
}

// RFC 9111 §5.3: Expires − Date; an invalid Expires such as "0" means already expired.
// Date absent → the arrival time stands in (§6.6.1 of RFC 9110: the recipient's clock).
function expiresLifetimeMs(res: OriginResponseInfo): number | undefined {
  const expires = res.headers.get("expires");
  if (expires === null) return undefined;
  const expiresAt = parseHttpDate(expires);
  if (expiresAt === undefined) return 0;
  return Math.max(0, expiresAt - dateOrArrival(res));
}

// RFC 9111 §4.2.2: heuristics only for statuses cacheable by default or responses marked
// `public`; the operator's default TTL wins over the Last-Modified rule, which is 10% of the
// time since last change, capped at a day. The default TTL is for statuses cacheable by
// default only: a `public` error page keeps just the Last-Modified rule (errors stay short).
function heuristicLifetimeMs(res: OriginResponseInfo, d: Directives, route: RoutePolicy): number {
  if (HEURISTICALLY_CACHEABLE.has(res.status)) {
    if (route.defaultTtlMs !== undefined && operatorTtlApplies(res.status)) return route.defaultTtlMs;
  } else if (!d.has("public")) return 0;
  const lastModifiedAt = parseHttpDate(res.headers.get("last-modified"));
  if (lastModifiedAt === undefined) return 0;
  return Math.min(ONE_DAY_MS, Math.max(0, Math.floor((dateOrArrival(res) - lastModifiedAt) / 10)));
}

/**
 * The operator's lifetimes (`forceTtlMs`, `defaultTtlMs`) are for answers that worked (below
 * 400). An error page gets only the lifetime the origin gave it (explicit freshness, or the
 * Last-Modified heuristic of a heuristically cacheable 404, 405, 410, 414, 501), or the error
 * opt-ins (`origin.notFoundTtlMs`, `origin.errorTtlMs`). Otherwise a client could make the
 * origin fail on a header it sends (a method override, a header the framework rejects with
 * 404 or 405: the cache-poisoned denial of service) and the error would be stored for
 * everyone for the route's TTL.
 */
function operatorTtlApplies(status: number): boolean {
  return status < 400;
}

// RFC 9111 §4.2.3 corrected_initial_age, without the apparent_age term (response_time − Date).
// That term trusts the origin's clock: a small VPS whose clock runs a minute behind would
// make every response arrive already stale, and herdless would revalidate on every request,
// the very herd it exists to stop. Like Varnish, herdless counts the Age header plus the
// response delay it measured itself. Expires − Date stays, since it is relative to one clock.
function correctedInitialAgeMs(res: OriginResponseInfo): number {
  const responseDelayMs = Math.max(0, res.responseAt - res.requestAt);
  return ageValueMs(res.headers) + responseDelayMs;
}

// RFC 9111 §5.1: Age is delta-seconds; of several values the first is used (§4.2.1), an invalid one ignored.
function ageValueMs(headers: HeaderReader): number {
  const age = headers.get("age");
  if (age === null) return 0;
  return parseDeltaSecondsMs((age.split(",")[0] ?? "").trim()) ?? 0;
}

function dateOrArrival(res: OriginResponseInfo): number {
  return parseHttpDate(res.headers.get("date")) ?? res.responseAt;
}

// RFC 9111 §5.2.2.2 must-revalidate, §5.2.2.8 proxy-revalidate and §5.2.2.4 no-cache forbid
// serving stale. §5.2.2.10: s-maxage carries proxy-revalidate for a shared cache, except that an
// origin sending s-maxage with an RFC 5861 stale window has explicitly allowed stale (§4.2.4
// permits "extension directives"), which is how `s-maxage=60, stale-while-revalidate=30` is meant.
function forbidsStale(d: Directives): boolean {
  if (d.has("must-revalidate") || d.has("proxy-revalidate") || isBare(d, "no-cache")) return true;
  return d.has("s-maxage") && !d.has("stale-while-revalidate") && !d.has("stale-if-error");
}

// RFC 5861 §3 (stale-while-revalidate) and §4 (stale-if-error), plus the operator's grace,
// which RFC 9111 §4.2.4 allows as "configuration in accordance with an out-of-band contract".
// Under s-maxage (proxy-revalidate, above) only a window the origin named allows stale: the
// grace lengthens it and never opens the other (`s-maxage=1, stale-if-error=60` was served
// stale-while-revalidate for the route's grace, and a 500 was hidden under `s-maxage=1,
// stale-while-revalidate=1`).
function staleWindowMs(d: Directives, name: "stale-while-revalidate" | "stale-if-error", graceMs: number): number {
  if (d.has("s-maxage") && !d.has(name)) return 0;
  return (deltaSecondsMs(d, name) ?? 0) + graceMs;
}
