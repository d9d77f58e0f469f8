import {
  deltaSecondsMs,
  isBare,
  MAX_DELTA_SECONDS,
  parseCacheControl,
  parseDeltaSecondsMs,
  parseTargetedCacheControl,
  qualifiedFields,
  type Directives,
} from "./cache-control.ts";
import type { Config, RoutePolicy } from "../config.ts";
import { headerList, type HeaderReader } from "./http.ts";

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

/** Why a response may not be stored in a shared cache. */
export type NotStorableReason =
  | "no-store"
  | "private"
  | "set-cookie"
  | "vary-star"
  | "status"
  | "authorization"
  | "method"
  | "partial"
  | "must-understand"
  | "malformed";
export type Storability = { storable: true } | { storable: false; reason: NotStorableReason };

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

/**
 * Statuses whose caching requirements herdless implements (RFC 9111 §5.2.2.3
 * must-understand): the final statuses RFC 9110 §15 defines, minus 206, which is never stored.
 */
const UNDERSTOOD_STATUSES: ReadonlySet<number> = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 304, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
  410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505,
]);

/**
 * Response fields whose meaning decides whether and how long a response is stored; a
 * malformed one (dropped on arrival) makes the response unstorable.
 */
const STORAGE_FIELDS: ReadonlySet<string> = new Set([
  "cache-control",
  "cdn-cache-control",
  "expires",
  "date",
  "age",
  "vary",
  "set-cookie",
  "pragma",
]);

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
 * RFC 9213 §2.2: a valid, non-empty CDN-Cache-Control governs, and then Cache-Control and
 * Expires are ignored; an invalid or empty one is ignored entirely.
 */
function governingDirectives(headers: HeaderReader): { d: Directives; targeted: boolean } {
  const targeted = parseTargetedCacheControl(headers.get("cdn-cache-control"));
  if (targeted) return { d: targeted, targeted: true };
  return { d: parseCacheControl(headers.get("cache-control")), targeted: false };
}

/**
 * RFC 9111 §3 (+§3.5 Authorization): may a shared cache store this response? Only GET
 * responses are stored; operator TTL overrides never make no-store, private, Set-Cookie,
 * `Vary: *` or 206 responses storable.
 *
 * @example
 * storability("GET", false, false, { status: 200, headers: new Headers(), requestAt: 0, responseAt: 0 }, route); // { storable: true }
 */
export function storability(
  method: string,
  requestHasAuthorization: boolean,
  requestHasCookie: boolean,
  res: OriginResponseInfo,
  route: RoutePolicy,
): Storability {
  const governing = governingDirectives(res.headers);
  const reason = notStorableReason(method, requestHasAuthorization, requestHasCookie, res, governing, route);
  return reason === undefined ? { storable: true } : { storable: false, reason };
}

function notStorableReason(
  method: string,
  hasAuthorization: boolean,
  hasCookie: boolean,
  res: OriginResponseInfo,
  governing: { d: Directives; targeted: boolean },
  route: RoutePolicy,
): NotStorableReason | undefined {
  const { d } = governing;
  if (!isStoredMethod(method)) return "method";
  if (res.status === 206) return "partial";
  if (d.has("must-understand") && !UNDERSTOOD_STATUSES.has(res.status)) return "must-understand";
  if (d.has("no-store") && !mustUnderstandOverridesNoStore(d, res.status)) return "no-store";
  if (isBare(d, "private")) return "private";
  if (res.headers.get("set-cookie") !== null && !withheldFields(d).has("set-cookie")) return "set-cookie";
  if (varyIsStar(res.headers)) return "vary-star";
  if (hasMalformedStorageField(res)) return "malformed";
  if (!route.cacheAuthorized && (hasCookie || (hasAuthorization && !authorizedMayBeShared(d)))) return "authorization";
  if (!isStorableStatus(res, governing)) return "status";
  return undefined;
}

// RFC 9111 §5.2.2.3: a cache that understands the status may ignore no-store when
// must-understand is present (that is the directive's purpose: no-store is for caches that don't).
function mustUnderstandOverridesNoStore(d: Directives, status: number): boolean {
  return d.has("must-understand") && UNDERSTOOD_STATUSES.has(status);
}

// RFC 9111 §5.2.2.4 (qualified no-cache) and §5.2.2.7 (qualified private): the named fields are
// never kept by a shared cache, and the rest of the response may be.
function withheldFields(d: Directives): Set<string> {
  return new Set([...qualifiedFields(d, "private"), ...qualifiedFields(d, "no-cache")]);
}

// RFC 9110 §5.5: a field dropped as invalid may have been one storage depends on; then what the
// origin meant is unknown and the response is answered without being shared.
function hasMalformedStorageField(res: OriginResponseInfo): boolean {
  return (res.droppedFields ?? []).some((name) => STORAGE_FIELDS.has(name));
}

/**
 * The header fields of a response as a shared cache keeps them: never Set-Cookie (herdless
 * replays no cookie, RFC 9111 §3 leaves it to the cache and a shared one must not share a
 * session), never the fields a qualified `private="…"` (§5.2.2.7) or `no-cache="…"`
 * (§5.2.2.4) names, never Age (recomputed on the way out, §5.1).
 *
 * @example
 * storedFields([["cache-control", 'max-age=60, private="x-user"'], ["x-user", "ann"], ["x-a", "1"]]);
 * // [["cache-control", 'max-age=60, private="x-user"'], ["x-a", "1"]]
 */
export function storedFields(headers: readonly [string, string][]): [string, string][] {
  const withheld = withheldFields(effectiveDirectives(headerList(headers)));
  return headers.filter(([name]) => name !== "set-cookie" && name !== "age" && !withheld.has(name));
}

// RFC 9111 §3: the method must be understood and cacheable. HEAD is cacheable by the RFC, but a
// HEAD response has no body to replay to a later GET, so herdless stores GET responses only.
function isStoredMethod(method: string): boolean {
  return method === "GET";
}

// RFC 9111 §4.1 / RFC 9110 §12.5.5: "Vary: *" never matches a later request, so storing it is waste.
function varyIsStar(headers: HeaderReader): boolean {
  const vary = headers.get("vary");
  return vary !== null && vary.split(",").some((name) => name.trim() === "*");
}

// RFC 9111 §3.5: a response to a request with Authorization may be shared only when it says
// public, s-maxage or must-revalidate. Cookies get no such exception: they personalize silently.
function authorizedMayBeShared(d: Directives): boolean {
  return d.has("public") || d.has("s-maxage") || d.has("must-revalidate");
}

// RFC 9111 §3: a final status that is heuristically cacheable, or any status with explicit
// freshness. 304 is a validation answer, never a representation to store (§4.3.4).
// A 5xx with explicit freshness is stored like any other response (§4.2.2 only limits heuristics).
function isStorableStatus(res: OriginResponseInfo, governing: { d: Directives; targeted: boolean }): boolean {
  if (res.status < 200 || res.status === 304) return false;
  return HEURISTICALLY_CACHEABLE.has(res.status) || hasExplicitFreshness(res.headers, governing);
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
  governing: { d: Directives; targeted: boolean } = governingDirectives(headers),
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
    swrUntil: Math.min(swrUntil, latest - 1),
    sieUntil: Math.min(sieUntil, latest - 1),
    deleteAt: Math.min(Math.max(deleteAt, staleAt + 1), latest),
    mustRevalidate,
  };
}

// RFC 9111 §5.2.2.4: bare no-cache means stale at once. The qualified `no-cache="field"` only
// forbids reusing those fields unvalidated; {@link storedFields} never keeps them, so the rest
// of the response keeps its lifetime.
function freshnessLifetimeMs(
  res: OriginResponseInfo,
  governing: { d: Directives; targeted: boolean },
  route: RoutePolicy,
): number {
  const { d, targeted } = governing;
  if (route.forceTtlMs !== undefined) return route.forceTtlMs;
  if (isBare(d, "no-cache")) return 0;
  return (
    directiveLifetimeMs(d, "s-maxage") ??
    directiveLifetimeMs(d, "max-age") ??
    (targeted ? undefined : expiresLifetimeMs(res)) ??
    heuristicLifetimeMs(res, route)
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

// RFC 9111 §4.2.2: heuristics only for statuses cacheable by default; the operator's default TTL
// wins over the Last-Modified rule, which is 10% of the time since last change, capped at a day.
function heuristicLifetimeMs(res: OriginResponseInfo, route: RoutePolicy): number {
  if (!HEURISTICALLY_CACHEABLE.has(res.status)) return 0;
  if (route.defaultTtlMs !== undefined) return route.defaultTtlMs;
  const lastModifiedAt = parseHttpDate(res.headers.get("last-modified"));
  if (lastModifiedAt === undefined) return 0;
  return Math.min(ONE_DAY_MS, Math.max(0, Math.floor((dateOrArrival(res) - lastModifiedAt) / 10)));
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
function staleWindowMs(d: Directives, name: "stale-while-revalidate" | "stale-if-error", graceMs: number): number {
  return (deltaSecondsMs(d, name) ?? 0) + graceMs;
}

const DAY_NAMES = "Mon|Tue|Wed|Thu|Fri|Sat|Sun";
const LONG_DAY_NAMES = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const MONTH = MONTHS.join("|");
const MONTHS_LOWER = MONTHS.map((name) => name.toLowerCase());
// RFC 9111 §4.2: "a cache recipient SHOULD match the field value case-insensitively" (flag i).
const IMF_FIXDATE = new RegExp(`^(?:${DAY_NAMES}), (\\d{2}) (${MONTH}) (\\d{4}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`, "i");
const RFC850_DATE = new RegExp(
  `^(?:${LONG_DAY_NAMES}), (\\d{2})-(${MONTH})-(\\d{2}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`,
  "i",
);
const ASCTIME_DATE = new RegExp(`^(?:${DAY_NAMES}) (${MONTH}) ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})$`, "i");

/**
 * Parses an HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms, RFC 9110
 * §5.6.7) to epoch ms; undefined when invalid. Two-digit RFC 850 years below 70 are 20xx:
 * the RFC's "more than 50 years in the future" rule needs a clock, and this is a pure function.
 *
 * @example
 * parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"); // 784111777000
 */
export function parseHttpDate(value: string | null): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let m = IMF_FIXDATE.exec(text);
  if (m) return utc(Number(m[3]), m[2], Number(m[1]), m[4], m[5], m[6]);
  m = RFC850_DATE.exec(text);
  if (m) {
    const yy = Number(m[3]);
    return utc(yy < 70 ? 2000 + yy : 1900 + yy, m[2], Number(m[1]), m[4], m[5], m[6]);
  }
  m = ASCTIME_DATE.exec(text);
  if (m) return utc(Number(m[6]), m[1], Number((m[2] ?? "").trim()), m[3], m[4], m[5]);
  return undefined;
}

/** Epoch ms of the given UTC fields, or undefined when out of range (31 Feb, 25:00). */
function utc(
  year: number,
  monthName: string | undefined,
  day: number,
  h?: string,
  min?: string,
  s?: string,
): number | undefined {
  const month = MONTHS_LOWER.indexOf((monthName ?? "").toLowerCase());
  const [hour, minute, second] = [Number(h), Number(min), Number(s)];
  // RFC 9110 §5.6.7 allows second 60 (a leap second): count it, after checking the calendar day.
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  const midnight = Date.UTC(year, month, day);
  const check = new Date(midnight);
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month) return undefined;
  return midnight + ((hour * 60 + minute) * 60 + second) * 1000;
}
