/**
 * What herdless does about the way a request travels: it counts `Max-Forwards` down (RFC 9110
 * §7.6.2) and adds itself to `CDN-Loop` (RFC 8586), so a request it sent that comes back to it
 * is recognized.
 */
import type { HeaderReader } from "../http/http.ts";

/**
 * RFC 9110 §7.6.2: the Max-Forwards of an OPTIONS request, when it holds a valid count
 * (1*DIGIT; anything else is not a count and goes on untouched). Zero means the request
 * must be answered here, not forwarded; the count goes on one lower.
 */
export function maxForwards(method: string, headers: { get(name: string): string | null }): number | undefined {
  return method === "OPTIONS" ? forwardsCount(headers.get("max-forwards")) : undefined;
}

/**
 * Request fields about the way the client's request came, not the page it asks for, kept off
 * shared fills: a GET's Max-Forwards means nothing (RFC 9110 §7.6.2: TRACE and OPTIONS only),
 * and `Early-Data: 1` says the client's request came in TLS early data (RFC 8470), which a fill
 * is not. An origin that refuses either (a 400, a 425 Too Early) answered the attacker's
 * request, stored as everyone's page when it marks every answer max-age. A relay keeps them.
 */
export const ABOUT_THE_WAY = ["max-forwards", "early-data"];

/** A Max-Forwards value as a count (1*DIGIT, whitespace around it allowed), or undefined. */
export function forwardsCount(value: string | null): number | undefined {
  const count = value?.trim();
  return count !== undefined && /^\d{1,15}$/.test(count) ? Number(count) : undefined;
}

/**
 * herdless's `CDN-Loop` entry (RFC 8586) for an origin URL: `herdless; o=` and a hash of that
 * URL, the same in every process and isolate of a deployment and different for a herdless
 * in front of another one (whose origin URL differs). A request that comes back carrying it
 * was sent by this deployment to itself (`origin.url` pointing at herdless): see
 * {@link loopsBack}.
 *
 * @example
 * loopEntry("http://127.0.0.1:8080"); // "herdless; o=…" (8 hex digits)
 */
export function loopEntry(originUrl: string): string {
  // FNV-1a (32 bits): a stable name for the URL, not a secret; the same on Node and workerd.
  let hash = 0x811c9dc5;
  for (let i = 0; i < originUrl.length; i++) hash = Math.imul(hash ^ originUrl.charCodeAt(i), 0x01000193);
  return `herdless; o=${(hash >>> 0).toString(16).padStart(8, "0")}`;
}

/**
 * Whether a request carries this deployment's own `CDN-Loop` entry: it is one of herdless's
 * origin requests come back. Answered at once (508) rather than collapsed onto the very fill
 * that sent it, which would wait out `origin.timeoutMs` and count as the origin timing out.
 *
 * @example
 * loopsBack({ get: () => "cloudflare, herdless; o=1a2b3c4d" }, loopEntry(config.origin.url)); // true for that URL
 */
export function loopsBack(headers: HeaderReader, entry: string): boolean {
  const loop = headers.get("cdn-loop");
  return loop !== null && loop.split(",").some((one) => one.trim().toLowerCase() === entry);
}
