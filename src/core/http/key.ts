import type { KeyOptions } from "../config.ts";
import { normalizedAcceptEncoding } from "./accept-encoding.ts";
import type { Entry } from "./entry.ts";
import { headerList, type HeaderReader } from "./http.ts";

/**
 * The primary cache key of a request: method class, scheme, lowercased host, path, and the
 * key's query ({@link keyQuery}). GET and HEAD share a key (a HEAD is answered from the GET
 * entry). Nothing else from the request enters the primary key, so no header outside the
 * key can change what is served.
 *
 * The parts come from a parsed WHATWG URL, whose serialization never holds whitespace
 * (spaces and control characters are percent-encoded, tabs and newlines removed): the
 * primary key never contains the newline that starts a variant's part ({@link variantKey}).
 *
 * @example
 * primaryKey(new URL("https://Example.com/a?b=2&a=1&utm_source=x"), { ignoreQuery: ["utm_*"], ignoreAllQuery: false });
 * // "GET https://example.com/a?a=1&b=2"
 */
export function primaryKey(url: URL, options: KeyOptions): string {
  return `GET ${url.protocol}//${url.host.toLowerCase()}${url.pathname}${keyQuery(url, options)}`;
}

/**
 * The scheme and host a primary key names (`https://shop.test`), as the client asked them;
 * undefined for a key that is no {@link primaryKey}.
 *
 * @example
 * keyOrigin("GET https://shop.test/a?b=1"); // "https://shop.test"
 */
export function keyOrigin(primary: string): string | undefined {
  const url = primary.slice(primary.indexOf(" ") + 1);
  return URL.canParse(url) ? new URL(url).origin : undefined;
}

/**
 * The query the key holds, and the only query the origin receives: ignored parameters
 * removed (not just left out of the key, so a parameter outside the key can never shape a
 * stored response), the rest kept byte for byte as the client spelled them, sorted by name
 * with repeated names in their original order. A `;` is not a separator here: in
 * `utm_source=x;lang=de` the whole piece belongs to `utm_source` and goes with it, so a
 * framework that splits on `;` never sees a parameter the key does not hold.
 *
 * @example
 * keyQuery(new URL("https://a.example/?b=2&utm_source=x;a=evil&a=1"), { ignoreQuery: ["utm_*"], ignoreAllQuery: false });
 * // "?a=1&b=2"
 */
export function keyQuery(url: URL, options: KeyOptions): string {
  if (options.ignoreAllQuery || url.search.length <= 1) return "";
  const kept: { name: string; raw: string }[] = [];
  for (const raw of url.search.slice(1).split("&")) {
    if (raw === "") continue;
    const name = decodedName(raw);
    if (!isIgnored(name, options.ignoreQuery)) kept.push({ name, raw });
  }
  if (kept.length === 0) return "";
  // A stable sort by name: parameter order never splits one page into several keys, and
  // repeated names (`a=2&a=1`, a list to many frameworks) keep the order the client gave.
  kept.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return `?${kept.map((p) => p.raw).join("&")}`;
}

/**
 * The name of a query piece as a form decoder reads it (`+` is a space, escapes decoded), in a
 * canonical ASCII form: an ASCII character as itself, `%` and every byte past ASCII as an
 * uppercase escape (`%C3%A9` for `é`), so names a decoder reads alike compare equal, with no
 * UTF-8 decoding and no exception. `decodeURIComponent` threw on `%zz` and `%ff`: a query of
 * 2,600 such names cost ~15 ms of CPU each time its key was made (three times a request), so a
 * few requests a second stalled every client.
 */
function decodedName(piece: string): string {
  const equals = piece.indexOf("=");
  const raw = equals === -1 ? piece : piece.slice(0, equals);
  const spaced = raw.includes("+") ? raw.replaceAll("+", " ") : raw;
  return spaced.includes("%") ? spaced.replace(ESCAPE_OR_PERCENT, canonicalEscape) : spaced;
}

const ESCAPE_OR_PERCENT = /%(?:[0-9A-Fa-f]{2})?/g;

function canonicalEscape(escape: string): string {
  if (escape.length === 1) return "%25";
  const byte = parseInt(escape.slice(1), 16);
  return byte === 0x25 || byte >= 0x80 ? escape.toUpperCase() : String.fromCharCode(byte);
}

/** An ignore pattern in {@link decodedName}'s form: `%` and characters past ASCII escaped. */
function canonicalPattern(pattern: string): string {
  if (!/[%\u0080-\uffff]/.test(pattern)) return pattern;
  try {
    return pattern.replace(/[%\u0080-\uffff]+/g, (text) => encodeURIComponent(text));
  } catch {
    return pattern; // A lone surrogate names no parameter a URL can hold.
  }
}

function isIgnored(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => {
    const p = canonicalPattern(pattern);
    return p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p;
  });
}

/** The request header names a response's Vary selects on, lowercased and sorted; `["*"]` for Vary: *. */
export function varyNames(vary: string | null): string[] {
  if (!vary) return [];
  const names = new Set<string>();
  for (const raw of vary.split(",")) {
    const name = raw.trim().toLowerCase();
    if (name === "*") return ["*"];
    if (name) names.add(name);
  }
  return [...names].sort();
}

/**
 * The request header names a stored response is selected on: its Vary ({@link varyNames}),
 * plus the ones its own fields show it was made from, whether its Vary names them or not:
 * - `accept-encoding` whenever its body carries a content coding. The origin chose that
 *   coding from the Accept-Encoding herdless sent (RFC 9110 §12.5.3); an origin that omits
 *   `Vary: Accept-Encoding` (nginx's `gzip_vary` is off by default) would otherwise have its
 *   gzip bytes served to a client that cannot decode them. At most four such variants exist
 *   (see `normalizedAcceptEncoding`).
 * - `origin` whenever it grants CORS to one origin (`Access-Control-Allow-Origin` other than
 *   `*`): that value is the request's `Origin` reflected, or one chosen from an allowlist by
 *   it (Fetch standard §3.2.5 asks such a server for `Vary: Origin`; a hand-written nginx
 *   `add_header Access-Control-Allow-Origin $http_origin` sends none). Kept for every
 *   visitor, the first requester's origin (an attacker's `https://evil.test`) was the only
 *   one every browser would let read the page, and the site's own app got a CORS error.
 *
 * plus `kept`: the ones the URL's stored copies are selected on ({@link keptSelectors}).
 * Selecting on more headers than the response names only narrows who it is reused for
 * (RFC 9111 §4.1 forbids the reverse).
 *
 * @example
 * selectingNames(headerList([["content-encoding", "gzip"]])); // ["accept-encoding"]
 * selectingNames(headerList([["vary", "Origin"]])); // ["origin"]
 * selectingNames(headerList([["access-control-allow-origin", "https://app.test"]])); // ["origin"]
 * selectingNames(headerList([]), ["accept-language"]); // ["accept-language"]: the URL's copies are made from it ({@link keptSelectors})
 */
export function selectingNames(response: HeaderReader, kept: readonly string[] = []): string[] {
  const names = varyNames(response.get("vary"));
  if (names[0] === "*") return names;
  const shown = IMPLIED_SELECTORS.filter(([, madeFrom]) => madeFrom(response)).map(([name]) => name);
  const added = [...new Set([...shown, ...kept])].filter((name) => !names.includes(name));
  return added.length === 0 ? names : [...names, ...added].sort();
}

/** Where the selectors a URL's copies keep are read: the entry under its primary key (a Vary pointer). */
export type SelectorSource = Pick<Entry, "vary" | "namedUntil">;

/**
 * The selectors of `pointer` (the entry under a URL's primary key) that a new answer for the
 * URL is selected on too, whether it shows them or not, at `now`:
 * - the ones {@link selectingNames} implies: once a URL's copies are known to be made from
 *   them, the answer to a request without `Origin` (which grants no CORS), or an identity
 *   body, is that request's variant. Stored under the bare URL, the answer to `curl` without
 *   `Origin` was served to the site's app and refused by its browser, until it expired.
 * - the ones a stored variant's own `Vary` named, while such a variant may still be stored
 *   (`namedUntil`, {@link namedUntil}). Many applications send `Vary` only when they read the
 *   header, and only when the request has it (a language negotiation that sends
 *   `Vary: Accept-Language` only to a request with that header): the answer to a request
 *   without it (a crawler, `curl`, an attacker once per lifetime) replaced the pointer, and
 *   every language was served that request's page. A URL that really stopped varying on a
 *   header is one copy again once the last variant that named it is gone.
 *
 * @example
 * keptSelectors({ vary: ["accept-language", "origin"] }, now); // ["origin"]
 * keptSelectors({ vary: ["accept-language"], namedUntil: [["accept-language", now + 1]] }, now); // ["accept-language"]
 */
export function keptSelectors(pointer: SelectorSource, now: number): string[] {
  const named = pointer.namedUntil ?? [];
  return pointer.vary.filter((name) => isImplied(name) || named.some(([n, until]) => n === name && until > now));
}

/**
 * The `namedUntil` of the Vary pointer `entry` (a variant) is stored with, over `previous` (the
 * entry under the primary key before it): each header `entry` is selected on that is not
 * implied, with the latest `deleteAt` of a variant whose own `Vary` named it. An answer selected
 * on a header only because it was kept carries no new instant: it is no sign the URL still varies.
 *
 * @example
 * namedUntil(variant, pointer); // [["accept-language", 1700000600000]]
 */
export function namedUntil(entry: Entry, previous: SelectorSource | undefined): [string, number][] {
  const own = varyNames(headerList(entry.headers).get("vary"));
  const named: [string, number][] = [];
  for (const name of entry.vary) {
    if (isImplied(name)) continue;
    const before = previous?.namedUntil?.find(([n]) => n === name)?.[1] ?? 0;
    const until = Math.max(before, own.includes(name) ? entry.deleteAt : 0);
    if (until > 0) named.push([name, until]);
  }
  return named;
}

/**
 * RFC 9111 §4.1: whether `response` (a stored copy's headers as a 304 updated them) is
 * selected on no request header the copy, whose selectors were `vary`, was not chosen by.
 *
 * @example
 * selectsAlike(headerList([["vary", "Accept-Language"]]), ["origin"]); // false
 * selectsAlike(headerList([]), ["accept-language"]); // true
 */
export function selectsAlike(response: HeaderReader, vary: readonly string[]): boolean {
  const names = selectingNames(response, vary);
  return names.length === vary.length && names.every((name, i) => name === vary[i]);
}

function isImplied(name: string): boolean {
  return IMPLIED_SELECTORS.some(([implied]) => implied === name);
}

/** Request headers a response's own fields show it was made from ({@link selectingNames}). */
const IMPLIED_SELECTORS: readonly (readonly [string, (response: HeaderReader) => boolean])[] = [
  ["accept-encoding", (response) => isCoded(response.get("content-encoding"))],
  ["origin", (response) => grantsOneOrigin(response.get("access-control-allow-origin"))],
];

function isCoded(coding: string | null): boolean {
  const value = coding?.trim().toLowerCase();
  return value !== undefined && value !== "" && value !== "identity";
}

// Fetch standard §3.2.3: `*` grants every origin alike; any other value (an origin, `null`) names one.
function grantsOneOrigin(allowed: string | null): boolean {
  return allowed !== null && allowed.trim() !== "*";
}

/**
 * The full key of a variant (RFC 9111 §4.1): the primary key, a newline, then the selecting
 * headers as a JSON array of `[name, value]` pairs, `null` for a header the request does not
 * carry (absent only matches absent). The primary key holds no newline and JSON escapes
 * every character of a name or value, so no URL, header name or value can spell another
 * key. Values are whitespace-normalized around commas so `a,b` and `a, b` match, and
 * `Accept-Encoding` is taken in the normalized form herdless forwards, so at most four
 * encoding variants exist per URL; `Accept-Language` is compared without case.
 *
 * @example
 * variantKey("GET https://a.example/p", ["origin"], new Headers({ origin: "https://b.example" }));
 * // 'GET https://a.example/p\n[["origin","https://b.example"]]'
 */
export function variantKey(primary: string, names: readonly string[], request: HeaderReader): string {
  if (names.length === 0) return primary;
  return `${primary}\n${JSON.stringify(names.map((name) => [name, selectingValue(name, request)]))}`;
}

function selectingValue(name: string, request: HeaderReader): string | null {
  if (name === "accept-encoding") return normalizedAcceptEncoding(request.get(name));
  const value = request.get(name);
  if (value === null) return null;
  // Split and trimmed, not `replace(/\s*,\s*/g)`: that regex backtracks over every run of
  // whitespace without a comma, quadratic in its length (16 KB of spaces cost ~0.4 s of CPU per
  // request, 64 KB ~5 s), on every request for a page that varies on the header.
  const spaced = value
    .split(",")
    .map((item) => item.trim())
    .join(",");
  // Language tags are case-insensitive (RFC 9110 §8.5.1, RFC 4647): `en-US` and `en-us` ask for the same variant.
  return name === "accept-language" ? spaced.toLowerCase() : spaced;
}
