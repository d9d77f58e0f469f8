import { synthetic, type EngineResponse } from "./respond.ts";

/** `Host` as RFC 9110 §7.2 allows it: a DNS name or IPv4 address, or an IPv6 literal, then an optional port. */
const VALID_HOST = /^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The Host check every runtime makes before anything else looks at a request. The key and
 * the origin URL are made from the Host, so a request whose Host is not a host name (`a b`,
 * `x|y`, `user@host`) or that carries two of them (which one would a cache and an origin
 * believe?) is refused with 400 (RFC 9112 §3.2), never guessed at and never a 500.
 * `hosts` holds every Host field the request carried (none for HTTP/1.0 without one).
 * (TRACE and TRACK are refused by the engine.)
 *
 * @example
 * hostRefusal(["a b"]); // a 400 answer: invalid Host header "a b"
 * hostRefusal(["shop.example"]); // undefined
 */
export function hostRefusal(hosts: readonly string[]): EngineResponse | undefined {
  if (hosts.length > 1) return refused("request has more than one Host header");
  const host = hosts[0];
  if (host !== undefined && !validHost(host)) return refused(`invalid Host header ${JSON.stringify(host)}`);
  return undefined;
}

/**
 * Hosts already found valid. Every request is checked, and a site sees a handful of Host
 * values: a regular expression and a URL parse per request were the largest share of the
 * Node hit path's own CPU. Bounded (cleared when full), so a flood of made-up hosts costs
 * parsing again, never memory; invalid hosts are not remembered.
 */
const knownValid = new Set<string>();
const KNOWN_VALID_LIMIT = 256;

function validHost(host: string): boolean {
  if (knownValid.has(host)) return true;
  if (!VALID_HOST.test(host)) return false;
  try {
    // The adapters build the request URL from it: what passes here must parse there.
    if (new URL(`http://${host}/`).host === "") return false;
  } catch {
    return false;
  }
  if (knownValid.size >= KNOWN_VALID_LIMIT) knownValid.clear();
  knownValid.add(host);
  return true;
}

function refused(message: string): EngineResponse {
  return synthetic(400, message, { detail: "refused" });
}
