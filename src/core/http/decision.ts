import type { Config, RoutePolicy } from "../config.ts";
import type { Entry } from "./entry.ts";
import type { HerdlessErrorCode } from "../errors.ts";
import { refusedHere } from "../origin/guarded-call.ts";
import { parseCacheControl } from "./cache-control.ts";
import { headerList } from "./http.ts";

/** What the engine needs to know about a request to decide; computed once by the adapter. */
export interface RequestFacts {
  method: string;
  hasAuthorization: boolean;
  hasCookie: boolean;
}

/**
 * What to do with a request, given what the near tier holds:
 * - `bypass`: go to the origin, store nothing (`authorization`: go to the origin, and store
 *   what RFC 9111 §3.5 lets a shared cache keep);
 * - `fresh`: answer from the entry;
 * - `stale-while-revalidate`: answer from the entry now, revalidate in the background;
 * - `revalidate`: ask the coordinator and wait (conditional request; stale-if-error may still apply);
 * - `miss`: nothing usable stored: ask the coordinator and wait.
 */
export type Decision =
  | { kind: "bypass"; reason: "method" | "route" | "credentials" | "authorization" }
  | { kind: "fresh"; entry: Entry }
  | { kind: "stale-while-revalidate"; entry: Entry }
  | { kind: "revalidate"; entry: Entry }
  | { kind: "miss"; fwd: "uri-miss" | "vary-miss" };

/** RFC 9111 §4: only GET and HEAD are answered from cache (HEAD from the GET entry). */
export function isCacheableMethod(method: string): boolean {
  return method === "GET" || method === "HEAD";
}

/** RFC 9111 §4.4: a non-error response to an unsafe method invalidates the URL. */
export function isUnsafeMethod(method: string): boolean {
  return !["GET", "HEAD", "OPTIONS", "TRACE"].includes(method);
}

/**
 * The decision table. `found` is what the near tier returned for the request's key and
 * `expectedKey` the variant key this request needs: an entry for another variant is a
 * vary-miss, never served (RFC 9111 §4.1).
 *
 * @example
 * decide(entry, entry.key, { method: "GET", hasAuthorization: false, hasCookie: false }, route, Date.now());
 */
export function decide(
  found: Entry | undefined,
  expectedKey: string,
  request: RequestFacts,
  route: RoutePolicy,
  now: number,
): Decision {
  if (!isCacheableMethod(request.method)) return { kind: "bypass", reason: "method" };
  if (route.bypass) return { kind: "bypass", reason: "route" };
  // Cookies personalize silently: unless the route says the origin never does, such requests
  // are neither answered from the cache nor stored, but for a copy the origin made public, as
  // it is (never with Authorization too: that request's own fill would carry its cookies, fill-request.ts).
  const personal = request.hasCookie && !route.cacheAuthorized;
  if (personal && (request.hasAuthorization || !found || !sharedWithCookies(found)))
    return { kind: "bypass", reason: "credentials" };
  // RFC 9111 §3.5: a request with Authorization gets its own answer from the origin (never a
  // shared copy: the origin may answer it differently), and that answer is stored only when
  // it says public, s-maxage or must-revalidate (freshness.ts authorizedMayBeShared).
  if (request.hasAuthorization && !route.cacheAuthorized) return { kind: "bypass", reason: "authorization" };
  const decision = fromCopy(found, expectedKey, now);
  if (personal && decision.kind !== "fresh" && decision.kind !== "stale-while-revalidate")
    return { kind: "bypass", reason: "credentials" };
  return decision;
}

/** What the stored copy (`found`, for the variant `expectedKey`) answers at `now`. */
function fromCopy(found: Entry | undefined, expectedKey: string, now: number): Decision {
  if (!found) return { kind: "miss", fwd: "uri-miss" };
  if (found.key !== expectedKey) return { kind: "miss", fwd: "vary-miss" };
  if (now < found.staleAt) return { kind: "fresh", entry: found };
  // RFC 5861 §3: within stale-while-revalidate, serve now and refresh behind the response.
  if (!found.mustRevalidate && now < found.swrUntil) return { kind: "stale-while-revalidate", entry: found };
  return { kind: "revalidate", entry: found };
}

/**
 * Whether a stored copy may answer a request that carries personal cookies, when it answers
 * as it is (fresh or within stale-while-revalidate: {@link decide}): a copy the origin said is
 * the same for every visitor (`Cache-Control: public`, its word to every cache) that does not
 * vary on `Cookie`. Such a copy was filled without any cookie (a shared fill never carries
 * one, forward.ts), so a visitor's session shapes nothing stored, and its stylesheet or image
 * is the one everyone gets. Without this, every request of a signed-in visitor (or of any
 * site that gives each visitor a session cookie) went to the origin, its assets too, and a
 * spike of them met no cache at all. Any other copy, an expired one or none: relayed alone
 * with its cookies, nothing stored, as before.
 */
function sharedWithCookies(copy: Entry): boolean {
  return (
    !copy.vary.includes("cookie") && parseCacheControl(headerList(copy.headers).get("cache-control")).has("public")
  );
}

/**
 * A stored copy that some failure could still be answered with (stale-if-error, or, with
 * `breaker.serveStaleWhileOpen`, any copy while no origin answer arrives). A good copy always beats an error: a cached
 * error never replaces or hides such a copy, in any tier.
 */
export function servableOnError(entry: Entry | undefined, config: Config, now: number): entry is Entry {
  return decideOnFailure(entry, "BREAKER_OPEN", config, now).kind === "stale-if-error";
}

/** After the origin could not give a fresh answer: serve the stored copy, or the error. */
export type FailureDecision = { kind: "stale-if-error"; entry: Entry } | { kind: "error" };

/**
 * RFC 5861 §4 stale-if-error, widened while no origin answer reached the request: while the
 * guard refuses to load the origin (breaker open, queue full, the key backing off), the
 * origin cannot be reached (refused or reset connection, no status within
 * `origin.timeoutMs`, a head no client could be given: RFC 9111 §4.2.4's "disconnected"
 * cache) or herdless's own coordination fails, any stored copy is better than an error, if
 * the operator keeps `breaker.serveStaleWhileOpen`. An answer the origin did give (a 5xx, a
 * body cut short) is hidden only within stale-if-error. must-revalidate entries (also
 * proxy-revalidate, s-maxage and bare no-cache: freshness.ts forbidsStale) and cached errors
 * are never served in place of a fresh answer.
 */
export function decideOnFailure(
  entry: Entry | undefined,
  code: HerdlessErrorCode,
  config: Config,
  now: number,
): FailureDecision {
  // An unconfirmed error (asked-by.ts) answers only the request it was the answer to: never in another's place.
  if (!entry || entry.mustRevalidate || entry.negative || entry.askedBy !== undefined) return { kind: "error" };
  if (now < entry.sieUntil) return { kind: "stale-if-error", entry };
  if (gaveNoAnswer(code) && config.breaker.serveStaleWhileOpen && now < entry.deleteAt)
    return { kind: "stale-if-error", entry };
  return { kind: "error" };
}

// No origin answer reached this request: herdless did not ask (its guard refused, or too many
// requests waited here already: origin.maxWaiting), the origin could not be reached,
// or herdless's own coordination failed (its object or Redis unreachable, another holder's
// fill past coordinator.waitTimeoutMs). None of these is the origin's word on the page.
function gaveNoAnswer(code: HerdlessErrorCode): boolean {
  return (
    refusedHere(code) ||
    code === "ORIGIN_NETWORK" ||
    code === "ORIGIN_TIMEOUT" ||
    code === "COORDINATOR_UNAVAILABLE" ||
    code === "LEASE_LOST"
  );
}
