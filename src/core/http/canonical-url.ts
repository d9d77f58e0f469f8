/**
 * A request's URL in the one spelling herdless keys, routes, purges and fetches it by, so
 * that spellings RFC 3986 §6.2.2 and every origin server read as the same resource are one
 * page (changed in place, and returned):
 *
 * - a percent-escape of an unreserved character (letters, digits, `-`, `_`, `~`) in the path
 *   is that character (§6.2.2.2: `/%70age` is `/page`), and every other escape is written
 *   in uppercase hex (§6.2.2.1: `/caf%c3%a9` is `/caf%C3%A9`);
 * - a host name's trailing dot is dropped (`shop.example.` is `shop.example`, as nginx
 *   reads a Host).
 *
 * Each spelling was a page of its own: a purge of `/page` left the copy stored under
 * `/%70age` served to whoever asked for it that way, and each spelling was one more origin
 * request in a herd. The origin is asked by this spelling too, so no spelling of a URL can
 * store an answer the origin gives to another (an origin that told `/%70age` from `/page`
 * could otherwise put its answer for one in the key of both). `%2E` (`.`) stays escaped:
 * decoded, `/a/%2E%2E/b` would become a `..` segment some origins resolve and others do not.
 * The query is left as it is: its names are compared decoded by the key already (key.ts).
 *
 * @example
 * canonicalUrl(new URL("http://Shop.example./%70age/caf%c3%a9")).href; // "http://shop.example/page/caf%C3%A9"
 */
export function canonicalUrl(url: URL): URL {
  const host = url.hostname;
  if (host.endsWith(".")) {
    // Trimmed by index: `/\.+$/` retries from every dot of a host full of them (quadratic: a
    // 16 KB Host of dots cost 300 ms of CPU per request).
    let end = host.length;
    while (end > 0 && host.charCodeAt(end - 1) === 0x2e) end--;
    const bare = host.slice(0, end);
    if (bare !== "") url.hostname = bare;
  }
  const path = url.pathname;
  if (path.includes("%")) {
    const canonical = path.replace(ESCAPE, canonicalEscape);
    if (canonical !== path) url.pathname = canonical;
  }
  return url;
}

const ESCAPE = /%[0-9A-Fa-f]{2}/g;

/** RFC 3986 §2.3's unreserved characters, but `.`, which {@link canonicalUrl} leaves escaped. */
const UNRESERVED = /^[A-Za-z0-9_~-]$/;

function canonicalEscape(escape: string): string {
  const char = String.fromCharCode(parseInt(escape.slice(1), 16));
  return UNRESERVED.test(char) ? char : escape.toUpperCase();
}
