/**
 * A client's Cache-Control request directives (RFC 9111 §5.2.1) as herdless applies them.
 *
 * herdless protects a fragile origin: by default a browser reload (`no-cache`, `max-age=0`,
 * `Pragma: no-cache`) is answered from the cache like any request, as CDNs do, so a crowd
 * pressing reload cannot reach the origin. A route with `honorRequestNoCache` revalidates
 * such requests through the key's coordinator instead (still one origin request per key at
 * a time). `only-if-cached` is always honoured: it can only spare the origin.
 */
import { deltaSecondsMs, parseCacheControl } from "./cache-control.ts";
import type { CacheStatus } from "./cache-status.ts";
import type { RoutePolicy } from "../config.ts";
import type { Decision } from "./decision.ts";
import type { Entry } from "./entry.ts";
import type { HeaderReader } from "./http.ts";

export interface RequestDirectives {
  /** §5.2.1.7: answer from what is stored, or 504. */
  onlyIfCached: boolean;
  /** §5.2.1.4, or `Pragma: no-cache` without Cache-Control (RFC 9111 §5.4): the client wants a validated answer. */
  noCache: boolean;
  /** §5.2.1.1: the oldest response the client accepts, in ms. */
  maxAgeMs: number | undefined;
}

/**
 * Reads the request directives herdless acts on.
 *
 * @example
 * requestDirectives(new Headers({ "cache-control": "max-age=0" })); // { onlyIfCached: false, noCache: false, maxAgeMs: 0 }
 */
export function requestDirectives(headers: HeaderReader): RequestDirectives {
  const cacheControl = headers.get("cache-control");
  const directives = parseCacheControl(cacheControl);
  const pragma = cacheControl === null ? (headers.get("pragma") ?? "") : "";
  return {
    onlyIfCached: directives.has("only-if-cached"),
    noCache: directives.has("no-cache") || /(^|,)\s*no-cache\s*(,|$)/i.test(pragma),
    maxAgeMs: deltaSecondsMs(directives, "max-age"),
  };
}

/**
 * Whether the client's own directives keep `entry` from answering it: the route honours them
 * (request-directives.ts says why not by default) and they ask for `no-cache`, or for an entry
 * younger than the client's `max-age`.
 *
 * @example
 * clientWantsRevalidation(route, requestDirectives(headers), entry, clock.now());
 */
export function clientWantsRevalidation(
  route: Pick<RoutePolicy, "honorRequestNoCache">,
  directives: RequestDirectives,
  entry: Entry,
  now: number,
): boolean {
  if (!route.honorRequestNoCache) return false;
  if (directives.noCache) return true;
  // In ms, not the Age header's whole seconds: `max-age=0` asks past anything not just fetched.
  return directives.maxAgeMs !== undefined && entry.initialAgeMs + (now - entry.storedAt) > directives.maxAgeMs;
}

/**
 * RFC 9111 §5.2.1.7: whether an `only-if-cached` request must be refused (a 504), and with
 * which Cache-Status `fwd` (why it would have gone forward): no copy, a stale one, a copy its
 * own `no-cache` or `max-age` asks to revalidate on a route that honours them (no stored
 * answer is then "consistent with the other constraints of the request"), or a request the
 * cache never answers from a copy. Undefined when the copy may answer it. Before, a
 * `no-cache, only-if-cached` on such a route went to the origin.
 *
 * @example
 * const fwd = onlyIfCachedRefusal(directives, decision, route, found.varyMiss, now);
 * if (fwd) return notCached({ fwd });
 */
export function onlyIfCachedRefusal(
  directives: RequestDirectives,
  decision: Decision,
  route: RoutePolicy,
  varyMiss: boolean,
  now: number,
): CacheStatus["fwd"] | undefined {
  if (!directives.onlyIfCached) return undefined;
  switch (decision.kind) {
    case "bypass":
      return decision.reason === "authorization" ? "request" : "bypass";
    case "fresh":
    case "stale-while-revalidate":
      return clientWantsRevalidation(route, directives, decision.entry, now) ? "request" : undefined;
    case "revalidate":
      return "stale";
    case "miss":
      return varyMiss ? "vary-miss" : "uri-miss";
  }
}

/** Request fields that only the engine answers: preconditions (304, 412) and Range (206). */
export const FULL_ANSWER_FIELDS = [
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  "range",
] as const;

/** Request fields carrying the directives a route with `honorRequestNoCache` acts on. */
export const REQUEST_DIRECTIVE_FIELDS = ["cache-control", "pragma"] as const;

/**
 * Whether a request carries anything only the engine answers (a precondition, a Range, or
 * request directives a route honours), so the synchronous fresh-hit paths leave it to the engine.
 */
export function needsFullAnswer(headers: HeaderReader, honorRequestNoCache: boolean): boolean {
  for (const name of FULL_ANSWER_FIELDS) if (headers.get(name) !== null) return true;
  if (!honorRequestNoCache) return false;
  for (const name of REQUEST_DIRECTIVE_FIELDS) if (headers.get(name) !== null) return true;
  return false;
}
