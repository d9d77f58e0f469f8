import { canonicalUrl } from "./canonical-url.ts";
import { isUnsafeMethod } from "./decision.ts";

/**
 * RFC 9111 §4.4: the URLs a response to an unsafe request invalidates. A non-error answer
 * (2xx, 3xx) to an unsafe method invalidates the request's target, and the URLs its
 * `Location` and `Content-Location` name when they are on the same origin as the target
 * (another origin's URL is never touched: a response could otherwise evict any page).
 * Empty for safe methods and error statuses.
 *
 * @example
 * invalidatedUrls("POST", new URL("https://a.test/cart"), 303, [["location", "/cart/1"]]);
 * // [URL https://a.test/cart, URL https://a.test/cart/1]
 */
export function invalidatedUrls(
  method: string,
  target: URL,
  status: number,
  responseHeaders: readonly (readonly [string, string])[],
): URL[] {
  if (!isUnsafeMethod(method) || status < 200 || status >= 400) return [];
  const urls = new Map<string, URL>([[target.href, target]]);
  for (const [name, value] of responseHeaders) {
    if (name !== "location" && name !== "content-location") continue;
    let url: URL;
    try {
      url = canonicalUrl(new URL(value.trim(), target));
    } catch {
      continue; // An unparseable reference names nothing to invalidate.
    }
    if (url.origin === target.origin) urls.set(url.href, url);
  }
  return [...urls.values()];
}
