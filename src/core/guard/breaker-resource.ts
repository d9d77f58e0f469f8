/**
 * What the breaker counts as one resource when it asks how many distinct ones fail
 * (`breaker.minFailingKeys`): the origin URL's path without its query (so without method or
 * Vary variant either), spelled as most frameworks route it (case, `;` parameters, repeated
 * or trailing slashes and encoded unreserved characters ignored). The rest is the client's
 * to choose: counted by key, an attacker who finds one URL the origin fails on (an expensive
 * search its gateway answers 504 for, a slow POST) asked it with three queries, or as
 * `/search`, `/Search/` and `//search;x`, and opened the breaker for every visitor.
 *
 * @example
 * breakerResource("http://origin.test/Search/?q=1"); // "http://origin.test/search"
 */
export function breakerResource(url: string): string {
  const end = url.search(/[?#]/);
  const bare = end < 0 ? url : url.slice(0, end);
  const pathAt = bare.indexOf("/", bare.indexOf("//") + 2);
  if (pathAt < 0) return bare;
  const path = bare
    .slice(pathAt)
    .replace(/%([0-9a-f]{2})/gi, (escape: string, hex: string) => {
      const char = String.fromCharCode(parseInt(hex, 16));
      return /[A-Za-z0-9._~-]/.test(char) ? char : escape;
    })
    .toLowerCase()
    .replace(/;[^/]*/g, "")
    .replace(/\/{2,}/g, "/")
    .replace(/(.)\/$/, "$1");
  return bare.slice(0, pathAt) + path;
}
