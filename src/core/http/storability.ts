import { isBare, parseCacheControl, qualifiedFields, type Directives } from "./cache-control.ts";
import type { RoutePolicy } from "../config.ts";
import {
  governingDirectives,
  hasExplicitFreshness,
  HEURISTICALLY_CACHEABLE,
  type Governing,
  type OriginResponseInfo,
} from "./freshness.ts";
import { headerList, type HeaderReader } from "./http.ts";
import { varyRefusal } from "./vary-refusal.ts";

/** Why a response may not be stored in a shared cache. */
export type NotStorableReason =
  | "no-store"
  | "private"
  | "set-cookie"
  | "client-state"
  | "vary-star"
  | "vary-client"
  | "status"
  | "authorization"
  | "method"
  | "partial"
  | "must-understand"
  | "malformed";
export type Storability = { storable: true } | { storable: false; reason: NotStorableReason };

/**
 * Statuses whose caching requirements herdless implements (RFC 9111 §5.2.2.3
 * must-understand): the final statuses RFC 9110 §15 defines, minus 206, which is never stored.
 */
const UNDERSTOOD_STATUSES: ReadonlySet<number> = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 304, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
  410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505,
]);

/**
 * Response fields that act on the one client that receives them, with the reason a response
 * carrying one is not stored (unless a qualified `private="…"` or `no-cache="…"` names it, and
 * then it is stored without it): `Set-Cookie` (a shared cache must not share a session) and
 * `Authentication-Info` (RFC 9110 §11.6.3: the `nextnonce` and `rspauth` of the requester's
 * own authentication, which replayed would hand the next visitor another user's state).
 * `Set-Cookie2` (obsolete, read by no browser) and `Clear-Site-Data` are stored as the
 * origin's Cache-Control allows, as every shared cache does (the HTTP caching conformance
 * suite requires both stored): an origin that marks such a response shareable means it.
 */
const CLIENT_STATE_FIELDS: ReadonlyMap<string, NotStorableReason> = new Map([
  ["set-cookie", "set-cookie"],
  ["authentication-info", "client-state"],
]);

/**
 * Response fields whose meaning decides whether and how long a response is stored, or how
 * its stored bytes are read (Content-Encoding); one dropped on arrival (malformed, or named
 * in Connection: response-fields.ts) makes the response unstorable.
 */
const STORAGE_FIELDS: ReadonlySet<string> = new Set([
  "cache-control",
  "content-encoding",
  "cdn-cache-control",
  "surrogate-control",
  "expires",
  "date",
  "age",
  "vary",
  "set-cookie",
  "pragma",
]);

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
  governing: Governing,
  route: RoutePolicy,
): NotStorableReason | undefined {
  const { d } = governing;
  if (!isStoredMethod(method)) return "method";
  // A 226 (RFC 3229) is a delta against one client's copy: a part of the page as much as a 206.
  if (res.status === 206 || res.status === 226 || claimsPart(res.headers.get("content-range"))) return "partial";
  if (d.has("must-understand") && !UNDERSTOOD_STATUSES.has(res.status)) return "must-understand";
  if (d.has("no-store") && !mustUnderstandOverridesNoStore(d, res.status)) return "no-store";
  if (isBare(d, "private")) return "private";
  const withheld = withheldFields(res.headers, governing);
  for (const [name, reason] of CLIENT_STATE_FIELDS)
    if (res.headers.get(name) !== null && !withheld.has(name)) return reason;
  const vary = varyRefusal(res.headers.get("vary"));
  if (vary) return vary;
  if (hasMalformedStorageField(res)) return "malformed";
  const shareable = (): boolean => authorizedMayBeShared(governing, res.headers);
  if (!route.cacheAuthorized && (hasCookie || (hasAuthorization && !shareable()))) return "authorization";
  if (!isStorableStatus(res, governing)) return "status";
  return undefined;
}

// RFC 9111 §5.2.2.3: a cache that understands the status may ignore no-store when
// must-understand is present (that is the directive's purpose: no-store is for caches that don't).
function mustUnderstandOverridesNoStore(d: Directives, status: number): boolean {
  return d.has("must-understand") && UNDERSTOOD_STATUSES.has(status);
}

// RFC 9111 §5.2.2.4 (qualified no-cache) and §5.2.2.7 (qualified private): the named fields are
// never kept by a shared cache, and the rest of the response may be. Those Cache-Control names
// count also where CDN-Cache-Control or Surrogate-Control governs this cache (RFC 9213): withholding a
// field is never less safe, and an origin behind a proxy that adds a blanket CDN lifetime still
// meant its `private="X-User"`; read from the governing field alone, X-User was every visitor's.
function withheldFields(headers: HeaderReader, governing = governingDirectives(headers)): Set<string> {
  const named = (d: Directives) => [...qualifiedFields(d, "private"), ...qualifiedFields(d, "no-cache")];
  const withheld = new Set(named(governing.d));
  // Cache-Control is read again only where a targeted field governed (else it was the one read).
  if (governing.targeted) for (const name of named(parseCacheControl(headers.get("cache-control")))) withheld.add(name);
  return withheld;
}

// RFC 9110 §5.5: a field dropped as invalid may have been one storage depends on; then what the
// origin meant is unknown and the response is answered without being shared.
function hasMalformedStorageField(res: OriginResponseInfo): boolean {
  return (res.droppedFields ?? []).some((name) => STORAGE_FIELDS.has(name));
}

/**
 * The header fields of a response as a shared cache keeps them: never Set-Cookie (herdless
 * replays no cookie, RFC 9111 §3 leaves it to the cache and a shared one must not share a
 * session) nor the other {@link CLIENT_STATE_FIELDS}, never the fields a qualified
 * `private="…"` (§5.2.2.7) or `no-cache="…"` (§5.2.2.4) names, never Age (recomputed on the
 * way out, §5.1).
 *
 * @example
 * storedFields([["cache-control", 'max-age=60, private="x-user"'], ["x-user", "ann"], ["x-a", "1"]]);
 * // [["cache-control", 'max-age=60, private="x-user"'], ["x-a", "1"]]
 */
export function storedFields(headers: readonly [string, string][]): [string, string][] {
  const withheld = withheldFields(headerList(headers));
  return headers.filter(([name]) => name !== "age" && !CLIENT_STATE_FIELDS.has(name) && !withheld.has(name));
}

/**
 * The fields {@link storedFields} withholds because a qualified `no-cache="…"` (§5.2.2.4) or
 * `private="…"` (§5.2.2.7) names them: the origin sent them with its answer to the request
 * that reached it, and that answer carries them (no reuse, so nothing for §5.2.2.4 to
 * forbid; the one requester, so nothing shared for §5.2.2.7). Every later answer from the
 * stored copy, and every caller that joined the same fetch, goes without them. A named
 * `Set-Cookie` or `Authentication-Info` too: that is what the qualified form is for (ASP.NET
 * sends `no-cache="Set-Cookie"` with the session cookie of a page it lets caches keep), and
 * withheld from its requester the session the origin began for that visitor never reached it.
 *
 * @example
 * requesterOnlyFields([["cache-control", 'max-age=60, no-cache="x-a"'], ["x-a", "1"], ["x-b", "2"]]);
 * // [["x-a", "1"]]
 */
export function requesterOnlyFields(headers: readonly [string, string][]): [string, string][] {
  const withheld = withheldFields(headerList(headers));
  if (withheld.size === 0) return [];
  return headers.filter(([name]) => withheld.has(name) && name !== "age");
}

// RFC 9111 §3: the method must be understood and cacheable. HEAD is cacheable by the RFC, but a
// HEAD response has no body to replay to a later GET, so herdless stores GET responses only.
function isStoredMethod(method: string): boolean {
  return method === "GET";
}

// RFC 9111 §3.5: a response to a request with Authorization may be shared only when it says
// public, s-maxage or must-revalidate. Cookies get no such exception: they personalize silently.
// `must-revalidate` lets others have it only for the lifetime the origin gave it: with none, a
// heuristic (10% of its Last-Modified age) made a user's page every visitor's for hours, never
// revalidated; without a lifetime it is that user's alone.
function authorizedMayBeShared(governing: Governing, headers: HeaderReader): boolean {
  const { d } = governing;
  return d.has("public") || d.has("s-maxage") || (d.has("must-revalidate") && hasExplicitFreshness(headers, governing));
}

/**
 * RFC 9111 §3.5 for a `304` answering a request's own Authorization: whether it says, itself,
 * that others may have it (`public`, `s-maxage`, `must-revalidate` with a lifetime). Judged
 * merged into the shared copy it validated, it took that copy's `public`, so a signed-in
 * user's `304` carrying a per-user field (`X-User`) was stored into the copy every anonymous
 * visitor then got.
 *
 * @example
 * notModifiedSharesCredentials([["cache-control", "max-age=60"]]); // false
 */
export function notModifiedSharesCredentials(headers: readonly (readonly [string, string])[]): boolean {
  const reader = headerList(headers);
  return authorizedMayBeShared(governingDirectives(reader), reader);
}

/**
 * RFC 9111 §3.5: the route a fill answering a request's own Authorization is stored under.
 * The operator's lifetimes (`defaultTtlMs`, `forceTtlMs`) are for the pages the origin serves
 * everyone; such an answer, shared by the origin's word alone, keeps the origin's lifetime: a
 * user's `max-age=0, must-revalidate` page was every visitor's for the route's TTL.
 *
 * @example
 * ownCredentialsRoute(route).forceTtlMs; // undefined
 */
export function ownCredentialsRoute(route: RoutePolicy): RoutePolicy {
  return { ...route, defaultTtlMs: undefined, forceTtlMs: undefined };
}

// RFC 9111 §3: a final status that is heuristically cacheable, or any status with explicit
// freshness. 304 is a validation answer, never a representation to store (§4.3.4).
// A 5xx with explicit freshness is stored like any other response (§4.2.2 only limits heuristics).
function isStorableStatus(res: OriginResponseInfo, governing: Governing): boolean {
  if (res.status < 200 || res.status === 304) return false;
  // RFC 9111 §3: a status cacheable by default, explicit freshness, or `public`.
  return (
    HEURISTICALLY_CACHEABLE.has(res.status) || governing.d.has("public") || hasExplicitFreshness(res.headers, governing)
  );
}

/**
 * RFC 9110 §14.4: whether a `Content-Range` on an answer that is not a 206 says its body is a
 * part of the representation (`bytes 0-3/12`, `bytes 4-7/*`): a fill never asks for a range,
 * so such a body may be a part labelled as the whole page. Any other value (the whole range,
 * or one that is not a byte range) means nothing on a 200 and is stored like any field, as
 * the caching conformance suite's `headers-store-Content-Range` requires.
 */
function claimsPart(contentRange: string | null): boolean {
  if (contentRange === null) return false;
  const range = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(contentRange);
  if (!range) return false;
  const [, first, last, complete] = range;
  return Number(first) !== 0 || complete === "*" || Number(last) + 1 !== Number(complete);
}
