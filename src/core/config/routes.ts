import * as v from "valibot";
import { abortive, array, boolean, lengthAtLeast, number, string, strictObject } from "./checks.ts";
import { ms, ttl } from "./fields.ts";

/** Query parameters left out of the key unless configured otherwise: click trackers that never change the page. */
export const DEFAULT_IGNORED_QUERY: readonly string[] = ["utm_*", "fbclid", "gclid"];

/**
 * How a route keys its pages. Both fields are optional with no schema default: a route's
 * unset field falls back to `defaults.key`'s, and only then to the built-in value
 * (`overlaid` in config.ts). A schema default would fill every route's field and hide the
 * operator's `defaults.key`.
 */
export const keyOptions = strictObject({
  /** Query parameter names to drop from the key; `*` at the end matches a prefix (`utm_*`). Default {@link DEFAULT_IGNORED_QUERY}. */
  ignoreQuery: v.optional(array(v.pipe(string(), lengthAtLeast(1)))),
  /** Drop the whole query string from the key. Default false. */
  ignoreAllQuery: v.optional(boolean()),
});

export const routePolicy = strictObject({
  /** Pass requests straight to the origin; nothing is stored. */
  bypass: v.optional(boolean()),
  /** Freshness when the origin sends no explicit lifetime (no max-age, s-maxage, Expires). */
  defaultTtlMs: v.optional(ttl("defaultTtlMs")),
  /** Freshness regardless of what the origin says (still never stores private/no-store). */
  forceTtlMs: v.optional(ttl("forceTtlMs")),
  /** Extra stale-while-revalidate window on top of the origin's. */
  staleWhileRevalidateMs: v.optional(ttl("staleWhileRevalidateMs")),
  /** Extra stale-if-error window on top of the origin's. */
  staleIfErrorMs: v.optional(ttl("staleIfErrorMs")),
  /** Cache responses to requests carrying Authorization or Cookie (the origin must not personalize them). */
  cacheAuthorized: v.optional(boolean()),
  /**
   * Revalidate, through the key's coordinator, requests whose Cache-Control says `no-cache` or a
   * `max-age` the stored entry is older than (or `Pragma: no-cache`). Off by default: a reload
   * is answered from the cache, so a crowd pressing reload cannot reach the origin.
   */
  honorRequestNoCache: v.optional(boolean()),
  /**
   * Refresh-ahead: a request in the last part of a fresh entry's lifetime (this share of it,
   * 0.1 = the last 10 %) starts a background revalidation, so a hot key is renewed before it
   * turns stale. 0 (off) by default: each renewal comes up to this share early.
   */
  refreshAhead: v.optional(
    v.pipe(
      number("refreshAhead must be a number between 0 and 0.5 (a share of the freshness lifetime)"),
      v.minValue(0, "refreshAhead must be between 0 and 0.5 (0.1 = the last 10 % of the lifetime)"),
      v.maxValue(0.5, "refreshAhead must be between 0 and 0.5 (0.1 = the last 10 % of the lifetime)"),
    ),
  ),
  key: v.optional(keyOptions),
  /**
   * The route's origin timeout (`origin.timeoutMs` when unset): a long poll, a slow report or
   * admin page answered past the site-wide timeout. Every origin call for the route keeps to it.
   */
  timeoutMs: v.optional(ms("timeoutMs", 1)),
});

const MATCH_FORMS = "exact /about, prefix /static/* or everything *";

function withoutStar(match: string): string {
  return match.endsWith("*") ? match.slice(0, -1) : match;
}

/**
 * The path a request for `match` is served under: what the WHATWG URL parser makes of it
 * (`/Über` is `/%C3%9Cber`, `/a/../b` is `/b`, `/a?b` is `/a`). Routes are matched against
 * that form, so a pattern in another one (a bypass route on `/Über/*`) silently never applied.
 */
function servedPath(match: string): string {
  return new URL(withoutStar(match), "http://route.invalid").pathname;
}

export const route = strictObject({
  ...routePolicy.entries,
  /**
   * Path pattern: exact `/about`, prefix `/static/*`, or any `*`. First match wins. A `*`
   * anywhere but the end (a glob such as `*.css`) is refused: it would be matched as the
   * literal character, so the route would silently never apply.
   */
  match: v.pipe(
    string((issue) => `match ${issue.input === undefined ? "is required" : "must be a string"}: ${MATCH_FORMS}`),
    // A pattern that does not start with / is not checked further.
    abortive(
      v.check(
        (match: string) => match === "*" || match.startsWith("/"),
        "match must start with / (for example /static/*)",
      ),
    ),
    v.check(
      (match) => !match.slice(0, -1).includes("*"),
      `match takes * only at its end (no globs or regular expressions): ${MATCH_FORMS}`,
    ),
    v.check(
      (match) => match === "*" || servedPath(match) === withoutStar(match),
      (issue) =>
        `match is matched against the path as a URL parser writes it, which never reads ${JSON.stringify(issue.input)}: write ${JSON.stringify(`${servedPath(String(issue.input))}${String(issue.input).endsWith("*") ? "*" : ""}`)} (percent-encoded, dot segments resolved, no query)`,
    ),
  ),
});
