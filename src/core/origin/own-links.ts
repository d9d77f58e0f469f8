/** The response fields that name a URL an origin may build from the `Host` it was sent (`Refresh`: in its `url=`). */
const LINK_FIELDS = new Set(["location", "content-location", "refresh"]);

/**
 * The scheme and authority of an absolute (`http://h/…`) or network-path (`//h/…`) reference,
 * read as browsers read an http(s) URL (WHATWG URL): a `\` is a `/` there, so `http:\\h\p`
 * and `//h\@evil/` name the host `h`.
 */
const ABSOLUTE = /^(?:[A-Za-z][A-Za-z0-9+.-]*:)?[/\\]{2}[^/?#\\]*/;

/**
 * nginx's `proxy_redirect default`: a `Location`, `Content-Location` or `Refresh` that names the origin's
 * own address (origin.url's scheme, host and port, under its path prefix) names the same
 * path, query and fragment at `publicOrigin`, the scheme and host the client asked (RFC 9110
 * §10.2.2, §8.7). With `origin.hostHeader: origin`, and always on the Worker, the origin is
 * sent origin.url's host, so an application that builds absolute redirects from `Host`
 * otherwise sends every visitor, and every stored copy, to the origin around the cache, its
 * cap and its breaker, and tells them its private address. Relative references and other
 * hosts' URLs are left as sent; the path after the prefix is kept byte for byte.
 *
 * @example
 * ownLinksRewritten([["location", "http://10.0.0.5:8080/app/login?next=%2F"]], "http://10.0.0.5:8080/app", "https://shop.test");
 * // [["location", "https://shop.test/login?next=%2F"]]
 */
export function ownLinksRewritten(
  headers: [string, string][],
  originUrl: string,
  publicOrigin: string,
): [string, string][] {
  if (!headers.some(([name]) => LINK_FIELDS.has(name))) return headers;
  const origin = new URL(originUrl);
  const base = origin.pathname.endsWith("/") ? origin.pathname.slice(0, -1) : origin.pathname;
  return headers.map(([name, value]) => {
    if (!LINK_FIELDS.has(name)) return [name, value];
    const rewritten =
      name === "refresh"
        ? refreshLink(value, origin.origin, base, publicOrigin)
        : publicLink(value, origin.origin, base, publicOrigin);
    return [name, rewritten ?? value];
  });
}

/** `value` at `publicOrigin` when it names a URL at `ownOrigin` under `base`; else undefined. */
function publicLink(value: string, ownOrigin: string, base: string, publicOrigin: string): string | undefined {
  const authority = ABSOLUTE.exec(value)?.[0];
  if (authority === undefined) return undefined;
  let named: URL;
  try {
    named = new URL(authority, ownOrigin);
  } catch {
    return undefined; // Not a URL a client could follow either: passed on as sent.
  }
  if (named.origin !== ownOrigin) return undefined;
  // The `\` that ends the authority is the path's `/` (written as `/`: a client that reads
  // URLs by RFC 3986, as curl does, took `https://shop.test\@evil/` for the host `evil`).
  const rest = value.slice(authority.length).replace(/^\\/, "/");
  if (!rest.startsWith(base)) return undefined;
  const after = rest.slice(base.length).replace(/^\\/, "/");
  // `/app` is not under `/ap`: the prefix ends where the origin's path does, or at a segment.
  if (after !== "" && !/^[/?#]/.test(after)) return undefined;
  return publicOrigin + (after.startsWith("/") ? after : `/${after}`);
}

/**
 * `Refresh: 5; url=http://…` (the HTML `meta refresh` as a field, which nginx rewrites too)
 * with its URL at `publicOrigin`; undefined when it names none of the origin's. Read with
 * string operations, not a pattern: a value is the origin's to write, up to kilobytes.
 */
function refreshLink(value: string, ownOrigin: string, base: string, publicOrigin: string): string | undefined {
  const at = value.toLowerCase().indexOf("url=");
  if (at < 0) return undefined;
  const start = at + "url=".length;
  const rest = value.slice(start).trim();
  const quote = rest[0] === "'" || rest[0] === '"' ? rest[0] : "";
  const link = quote && rest.endsWith(quote) && rest.length > 1 ? rest.slice(1, -1) : rest;
  const rewritten = publicLink(link, ownOrigin, base, publicOrigin);
  if (rewritten === undefined) return undefined;
  const wrap = link === rest ? "" : quote;
  return `${value.slice(0, start)}${wrap}${rewritten}${wrap}`;
}
