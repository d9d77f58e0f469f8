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
 * Whether a request's `Cookie` value names a cookie that `ignored` does not: one that may make
 * the answer personal, so the request is relayed and nothing of it is shared (or, on a
 * `cacheAuthorized` route, filled with its cookies). Names match exactly, or by prefix for a
 * pattern ending in `*`. A pair without a name (`=x`, or `x` alone, which browsers read as a
 * value) counts as personal: whatever is not understood is not ignored. A field with no pair
 * at all is no cookie.
 *
 * Cookies are parted by `,` as well as `;`: a Fetch API `Headers` (workerd's) joins a client's
 * several Cookie fields with `, ` (Node joins them with `; `), and origins that read RFC 2965's
 * `,` take it as a separator. Read by `;` alone, `_ga=GA1.2.3, sessionid=alice` was one ignored
 * `_ga` cookie: a signed-in visitor was served the guest's stored page, and filled one without
 * its session. Each part is judged, which can only find more requests personal, never fewer
 * (an ignored cookie whose value holds a comma is then the visitor's own: relayed, not leaked).
 *
 * @example
 * personalCookies("_ga=GA1.2.3; _gid=GA1.2.4", DEFAULT_IGNORED_COOKIES); // false
 * personalCookies("_ga=GA1.2.3; session=abc", DEFAULT_IGNORED_COOKIES); // true
 * personalCookies("_ga=GA1.2.3, session=abc", DEFAULT_IGNORED_COOKIES); // true
 */
export function personalCookies(value: string | null | undefined, ignored: readonly string[]): boolean {
  if (value === null || value === undefined) return false;
  const patterns = patternsOf(ignored);
  for (const pair of value.split(";")) {
    if (pair.trim() === "") continue;
    let parts = 0;
    for (const part of pair.split(",")) {
      if (part.trim() === "") continue;
      parts++;
      if (personalPair(part, patterns)) return true;
    }
    // Commas alone: not understood, so not ignored (as `;,;` was before commas parted cookies).
    if (parts === 0) return true;
  }
  return false;
}

function personalPair(pair: string, { names, prefixes }: Patterns): boolean {
  const eq = pair.indexOf("=");
  const name = eq < 0 ? "" : pair.slice(0, eq).trim();
  return name === "" || !(names.has(name) || prefixes.some((p) => name.startsWith(p)));
}

/**
 * A `,`-then-space that starts another cookie (`, name=`): where a Fetch API `Headers` joined
 * two Cookie fields. A cookie's value may hold no comma (RFC 6265 §4.1.1), but some
 * applications write them; one followed by anything but a cookie name and `=` is kept as it is.
 */
const JOINED_FIELD = /, (?=[!#$%&'*+\-.^_`|~0-9A-Za-z]+=)/;

/**
 * The Cookie fields a Fetch API `Headers` joined into `value` with `, `, told apart again.
 * workerd keeps no list of a request's fields (its `getAll` serves `Set-Cookie` alone), so
 * they are cut where `, ` is followed by a cookie's name and `=` ({@link JOINED_FIELD}). A
 * value that has none stays whole.
 *
 * @example
 * joinedCookieFields("_ga=GA1.2.3, sessionid=alice"); // ["_ga=GA1.2.3", "sessionid=alice"]
 * joinedCookieFields("note=a, b"); // ["note=a, b"]
 */
export function joinedCookieFields(value: string): string[] {
  return value.split(JOINED_FIELD);
}

/**
 * `fields` with their Cookie fields as one, joined with `; ` where the first stood, as
 * RFC 6265 §5.4 has a user agent send them and RFC 9113 §8.2.3 joins HTTP/2's cookie crumbs
 * before an HTTP/1.1 hop. Passed on as several, an origin's server may join them with `, `
 * (Apache and workerd do; Node alone joins Cookie with `; `), and standard cookie parsers read
 * `sessionid=alice, csrftoken=t0k` as one `sessionid` whose value is all of that. Empty ones are dropped; a
 * request with one Cookie field or none is returned as it is.
 *
 * @example
 * oneCookieField([["cookie", "_ga=1"], ["accept", "text/html"], ["cookie", "sid=a"]]); // [["cookie", "_ga=1; sid=a"], ["accept", "text/html"]]
 */
export function oneCookieField(fields: readonly (readonly [string, string])[]): readonly (readonly [string, string])[] {
  const isCookie = (name: string) => name.length === 6 && name.toLowerCase() === "cookie";
  let count = 0;
  for (const [name] of fields) if (isCookie(name)) count++;
  if (count < 2) return fields;
  const values = fields.filter(([name, value]) => isCookie(name) && value.trim() !== "").map(([, v]) => v.trim());
  const out: (readonly [string, string])[] = [];
  let joined = false;
  for (const field of fields) {
    if (!isCookie(field[0])) out.push(field);
    else if (!joined && values.length > 0) out.push([field[0], values.join("; ")]);
    joined ||= isCookie(field[0]);
  }
  return out;
}
