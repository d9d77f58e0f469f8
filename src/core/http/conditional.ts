/**
 * Client preconditions evaluated against a stored response (RFC 9110 §13, RFC 9111 §4.3.2):
 * pure decisions, no I/O. The engine asks {@link evaluatePreconditions} before serving an
 * entry and answers 304 or 412 itself when the stored representation decides the question.
 */
import type { Representation } from "./entry.ts";
import { parseHttpDate } from "./http-date.ts";
import type { HeaderReader } from "./http.ts";

/** An entity-tag (RFC 9110 §8.8.3): its opaque part, quotes included, and whether it is weak. */
export interface EntityTag {
  weak: boolean;
  opaque: string;
}

/**
 * What a request's preconditions say about a stored response:
 * - `proceed`: serve it (no precondition, or every one holds);
 * - `not-modified`: answer 304 (If-None-Match / If-Modified-Since false, GET or HEAD);
 * - `failed`: answer 412 (If-Match / If-Unmodified-Since false).
 */
export type PreconditionVerdict = "proceed" | "not-modified" | "failed";

/**
 * Parses one entity-tag; undefined when `value` is not exactly one.
 *
 * @example
 * parseEntityTag('W/"v1"'); // { weak: true, opaque: '"v1"' }
 */
export function parseEntityTag(value: string): EntityTag | undefined {
  const list = parseEntityTagList(value);
  return list !== "*" && list?.length === 1 ? list[0] : undefined;
}

/**
 * `"*" / #entity-tag` (If-Match, If-None-Match). Undefined when the value is malformed: a
 * precondition that cannot be read is ignored rather than guessed at. A DQUOTE-delimited
 * opaque-tag may contain commas, so the list is scanned, not split.
 */
export function parseEntityTagList(value: string): EntityTag[] | "*" | undefined {
  const text = value.trim();
  if (text === "*") return "*";
  const tags: EntityTag[] = [];
  let i = 0;
  for (;;) {
    while (text[i] === " " || text[i] === "\t" || text[i] === ",") i++;
    if (i >= text.length) break;
    const weak = text.startsWith("W/", i);
    if (weak) i += 2;
    if (text[i] !== '"') return undefined;
    const close = text.indexOf('"', i + 1);
    if (close < 0) return undefined;
    tags.push({ weak, opaque: text.slice(i, close + 1) });
    i = close + 1;
    while (text[i] === " " || text[i] === "\t") i++;
    if (i < text.length && text[i] !== ",") return undefined;
  }
  return tags.length > 0 ? tags : undefined;
}

/** RFC 9110 §8.8.3.2 weak comparison: the opaque tags match, either or both may be weak. */
export function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.opaque === b.opaque;
}

/** RFC 9110 §8.8.3.2 strong comparison: neither is weak and the opaque tags match. */
export function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.opaque === b.opaque;
}

/**
 * RFC 9110 §13.2.2: the order in which a recipient evaluates preconditions, against the
 * stored response `entry` (its ETag and Last-Modified are those of the representation the
 * cache would send). Only a 2xx entry is judged (§13.2.1: preconditions are ignored when the
 * answer without them would not be 2xx). Malformed fields and unreadable dates are ignored.
 *
 * @example
 * evaluatePreconditions(entry, new Headers({ "if-none-match": 'W/"v1"' }), "GET"); // "not-modified"
 */
export function evaluatePreconditions(
  entry: Representation,
  headers: HeaderReader,
  method: string,
): PreconditionVerdict {
  if (entry.status < 200 || entry.status > 299) return "proceed";
  const stored = entry.etag === undefined ? undefined : parseEntityTag(entry.etag);
  // Step 1 (§13.1.1): If-Match, strong comparison; `*` holds since a representation is stored.
  const ifMatch = headers.get("if-match");
  const matchList = ifMatch === null ? undefined : parseEntityTagList(ifMatch);
  if (matchList !== undefined) {
    if (matchList !== "*" && !(stored && matchList.some((tag) => strongMatch(tag, stored)))) return "failed";
  } else {
    // Step 2 (§13.1.4): If-Unmodified-Since, only without If-Match and only with a Last-Modified to compare.
    const since = parseHttpDate(headers.get("if-unmodified-since"));
    const modified = parseHttpDate(entry.lastModified ?? null);
    if (since !== undefined && modified !== undefined && modified > since) return "failed";
  }
  if (method !== "GET" && method !== "HEAD") return "proceed";
  // Step 3 (§13.1.2): If-None-Match, weak comparison; `*` matches any stored representation.
  const ifNoneMatch = headers.get("if-none-match");
  const noneList = ifNoneMatch === null ? undefined : parseEntityTagList(ifNoneMatch);
  if (noneList !== undefined) {
    if (noneList === "*" || (stored && noneList.some((tag) => weakMatch(tag, stored)))) return "not-modified";
    return "proceed";
  }
  // The field is present but unreadable: it still disables If-Modified-Since (§13.1.3), and nothing matches.
  if (ifNoneMatch !== null) return "proceed";
  // Step 4 (§13.1.3, RFC 9111 §4.3.2): If-Modified-Since against Last-Modified, else Date, else arrival.
  // Ignored unless one valid HTTP-date (a list of dates does not parse).
  const since = parseHttpDate(headers.get("if-modified-since"));
  if (since === undefined) return "proceed";
  return lastModifiedOf(entry) <= since ? "not-modified" : "proceed";
}

/** RFC 9111 §4.3.2: the stored response's Last-Modified, or its Date, or when it was received. */
function lastModifiedOf(entry: Representation): number {
  return parseHttpDate(entry.lastModified ?? null) ?? parseHttpDate(headerOf(entry, "date") ?? null) ?? entry.storedAt;
}

function headerOf(entry: Representation, name: string): string | undefined {
  return entry.headers.find(([n]) => n === name)?.[1];
}

/**
 * RFC 9110 §15.4.5: a 304 made from the stored response carries what the origin's own 304
 * would: every field of the stored response but the representation metadata and framing that
 * describe the body it leaves out (§15.4.5's SHOULD NOT; Last-Modified stays, it guides the
 * client's cache update when there is no ETag), and the digests of those bytes. The rest
 * (Access-Control-Allow-Origin, Link, Content-Security-Policy, X-*) is the client's as on the
 * 200: a page's own `fetch()` with If-None-Match gets the 304 itself, and one without the
 * stored Access-Control-Allow-Origin failed the browser's CORS check where the origin's
 * passed. Set-Cookie is never part of a stored response; a relayed answer's is added by
 * its caller for its own client alone.
 */
const LEFT_OUT_OF_NOT_MODIFIED = new Set([
  "content-type",
  "content-length",
  "content-encoding",
  "content-language",
  "content-range",
  "transfer-encoding",
  "content-digest",
  "repr-digest",
  "digest",
  "content-md5",
  "set-cookie",
]);

/** Whether a stored header goes into a 304 made from the entry (RFC 9110 §15.4.5). */
export function keptInNotModified(name: string): boolean {
  return !LEFT_OUT_OF_NOT_MODIFIED.has(name);
}
