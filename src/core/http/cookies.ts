/**
 * Cookies a browser sends to every page of a site that no application reads: set and read by
 * analytics and ad scripts in the page, or by Cloudflare's edge in front of it. A request
 * whose cookies are all of these is answered as if it had none (`cache.ignoreCookies`).
 * Consent cookies are not among them: an application may render its banner from one.
 */
export const DEFAULT_IGNORED_COOKIES: readonly string[] = [
  // Google Analytics, Google Ads
  "_ga",
  "_ga_*",
  "_gid",
  "_gat",
  "_gat_*",
  "__utm*",
  "_gcl_*",
  // Meta, Microsoft Clarity and Ads, Hotjar, Matomo, Segment
  "_fbp",
  "_fbc",
  "_clck",
  "_clsk",
  "_uetsid",
  "_uetvid",
  "_hj*",
  "_pk_id*",
  "_pk_ses*",
  "ajs_anonymous_id",
  // Cloudflare's bot management, challenge clearance, load-balancer affinity and rate limiting
  "__cf_bm",
  "cf_clearance",
  "__cflb",
  "__cfruid",
  "_cfuvid",
];

interface Patterns {
  names: Set<string>;
  prefixes: string[];
}

const compiled = new WeakMap<readonly string[], Patterns>();

function patternsOf(ignored: readonly string[]): Patterns {
  let patterns = compiled.get(ignored);
  if (!patterns) {
    patterns = { names: new Set(), prefixes: [] };
    for (const p of ignored) {
      if (p.endsWith("*")) patterns.prefixes.push(p.slice(0, -1));
      else patterns.names.add(p);
    }
    compiled.set(ignored, patterns);
  }
  return patterns;
}

/**
 * Whether a request's `Cookie` value (Node and the Fetch API join several fields with `; `)
 * names a cookie that `ignored` does not: one that may make the answer personal, so the
 * request is relayed and nothing of it is shared (or, on a `cacheAuthorized` route, filled
 * with its cookies). Names match exactly, or by prefix for a pattern ending in `*`. A pair
 * without a name (`=x`, or `x` alone, which browsers read as a value) counts as personal:
 * whatever is not understood is not ignored. A field with no pair at all is no cookie.
 *
 * @example
 * personalCookies("_ga=GA1.2.3; _gid=GA1.2.4", DEFAULT_IGNORED_COOKIES); // false
 * personalCookies("_ga=GA1.2.3; session=abc", DEFAULT_IGNORED_COOKIES); // true
 */
export function personalCookies(value: string | null | undefined, ignored: readonly string[]): boolean {
  if (value === null || value === undefined) return false;
  const { names, prefixes } = patternsOf(ignored);
  for (const pair of value.split(";")) {
    if (pair.trim() === "") continue;
    const eq = pair.indexOf("=");
    const name = eq < 0 ? "" : pair.slice(0, eq).trim();
    if (name === "" || !(names.has(name) || prefixes.some((p) => name.startsWith(p)))) return true;
  }
  return false;
}
