import type { KeyOptions } from "../config.ts";
import type { HeaderReader } from "./http.ts";

/**
 * The primary cache key of a request: method class, scheme, lowercased host, path, and the
 * query with parameters sorted and ignored ones dropped. GET and HEAD share a key (a HEAD is
 * answered from the GET entry). Nothing else from the request enters the primary key, so
 * no header outside the key can change what is served.
 *
 * @example
 * primaryKey(new URL("https://Example.com/a?b=2&a=1&utm_source=x"), { ignoreQuery: ["utm_*"], ignoreAllQuery: false });
 * // "GET https://example.com/a?a=1&b=2"
 */
export function primaryKey(url: URL, options: KeyOptions): string {
  return `GET ${url.protocol}//${url.host.toLowerCase()}${url.pathname}${normalizedQuery(url, options)}`;
}

function normalizedQuery(url: URL, options: KeyOptions): string {
  if (options.ignoreAllQuery || url.search === "") return "";
  const kept = [...url.searchParams].filter(([name]) => !isIgnored(name, options.ignoreQuery));
  if (kept.length === 0) return "";
  // Sort by name, then value, so parameter order never splits one page into several keys.
  kept.sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  return `?${new URLSearchParams(kept).toString()}`;
}

function isIgnored(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p));
}

/**
 * Request headers that never select a variant: the cache always asks the origin for an
 * identity body, so Accept-Encoding cannot change what the origin sends us.
 */
const IGNORED_VARY = new Set(["accept-encoding"]);

/** The request header names a response's Vary selects on, lowercased and sorted; `["*"]` for Vary: *. */
export function varyNames(vary: string | null): string[] {
  if (!vary) return [];
  const names = new Set<string>();
  for (const raw of vary.split(",")) {
    const name = raw.trim().toLowerCase();
    if (name === "*") return ["*"];
    if (name && !IGNORED_VARY.has(name)) names.add(name);
  }
  return [...names].sort();
}

/**
 * The full key of a variant: the primary key plus the request's values for the Vary
 * names (RFC 9111 §4.1). Values are whitespace-normalized so `a,b` and `a, b` match.
 */
export function variantKey(primary: string, names: readonly string[], request: HeaderReader): string {
  if (names.length === 0) return primary;
  const parts = names.map((name) => `${name}=${(request.get(name) ?? "").replace(/\s*,\s*/g, ",").trim()}`);
  return `${primary}|${parts.join("|")}`;
}
