/**
 * Range requests answered from a stored full response (RFC 9110 §14): pure decisions, no I/O.
 * The cache always stores and asks the origin for the whole representation; a client's
 * Range only shapes what is sent back from the stored bytes.
 */
import { parseEntityTag, strongMatch } from "./conditional.ts";
import type { Representation } from "./entry.ts";
import { parseHttpDate } from "./http-date.ts";
import type { HeaderReader } from "./http.ts";

/**
 * What asks for part of a representation: Range, its precondition, and Range's pre-RFC 2068
 * name (Apache httpd honours it). Kept off a shared fill (forward.ts) and off the GET the
 * Worker asks a HEAD as (interim-fetch.ts).
 */
export const RANGE_FIELDS: readonly string[] = ["range", "if-range", "request-range"];

/**
 * What to send for a request's Range, given a stored response (or the head of one whose body
 * of `length` bytes is still arriving):
 * - `full`: the whole 200 (no Range, Range ignored, several ranges, or If-Range not matching);
 * - `partial`: a 206 of bytes `start` to `end` inclusive;
 * - `unsatisfiable`: a 416 with `Content-Range: bytes *\/length`.
 */
export type RangeSelection =
  | { kind: "full" }
  | { kind: "partial"; start: number; end: number; length: number }
  | { kind: "unsatisfiable"; length: number };

const FULL: RangeSelection = { kind: "full" };

/**
 * RFC 9110 §14.2: a Range is honoured on GET of a stored 200 only. One `bytes` range (first-last,
 * first-, or suffix -n) is served as 206; a set of several ranges gets the full 200 (a server
 * may ignore Range, and multipart answers buy a cache little); a syntactically invalid Range
 * or another unit is ignored. If-Range (§13.1.5) lets the range through only when it matches
 * the stored validator strongly: an entity-tag by strong comparison, a date only when it
 * equals a Last-Modified that is itself strong (at least a second before the response's Date).
 *
 * @example
 * selectRange(entry, new Headers({ range: "bytes=-500" }), "GET", entry.body.byteLength); // { kind: "partial", start: len - 500, ... }
 */
export function selectRange(
  entry: Representation,
  headers: HeaderReader,
  method: string,
  length: number,
): RangeSelection {
  if (method !== "GET" || entry.status !== 200 || entry.negative) return FULL;
  const range = headers.get("range");
  if (range === null) return FULL;
  const ifRange = headers.get("if-range");
  if (ifRange !== null && !ifRangeMatches(entry, ifRange)) return FULL;
  const specs = parseByteRanges(range);
  if (specs === undefined || specs.length !== 1) return FULL;
  // A zero-length body has no range to name in Content-Range; the whole (empty) 200 says it all.
  if (length === 0) return FULL;
  const spec = specs[0] as ByteRangeSpec;
  if (spec.kind === "suffix") {
    if (spec.length === 0) return { kind: "unsatisfiable", length };
    return { kind: "partial", start: Math.max(0, length - spec.length), end: length - 1, length };
  }
  if (spec.first >= length) return { kind: "unsatisfiable", length };
  const end = spec.last === undefined ? length - 1 : Math.min(spec.last, length - 1);
  return { kind: "partial", start: spec.first, end, length };
}

type ByteRangeSpec = { kind: "int"; first: number; last?: number } | { kind: "suffix"; length: number };

/** `bytes=` ranges-specifier (RFC 9110 §14.1.1); undefined when any part is invalid or the unit is not bytes. */
function parseByteRanges(value: string): ByteRangeSpec[] | undefined {
  const eq = value.indexOf("=");
  if (eq < 0 || value.slice(0, eq).trim().toLowerCase() !== "bytes") return undefined;
  const specs: ByteRangeSpec[] = [];
  for (const raw of value.slice(eq + 1).split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    const m = /^(\d*)-(\d*)$/.exec(part);
    if (!m) return undefined;
    const [, first = "", last = ""] = m;
    if (first === "") {
      if (last === "") return undefined;
      specs.push({ kind: "suffix", length: Number(last) });
    } else if (last === "") {
      specs.push({ kind: "int", first: Number(first) });
    } else {
      if (Number(last) < Number(first)) return undefined;
      specs.push({ kind: "int", first: Number(first), last: Number(last) });
    }
  }
  return specs.length > 0 ? specs : undefined;
}

/** RFC 9110 §13.1.5: If-Range holds only against a strong validator of the stored response. */
function ifRangeMatches(entry: Representation, value: string): boolean {
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith("W/")) {
    const tag = parseEntityTag(trimmed);
    const stored = entry.etag === undefined ? undefined : parseEntityTag(entry.etag);
    return tag !== undefined && stored !== undefined && strongMatch(tag, stored);
  }
  const date = parseHttpDate(trimmed);
  const modified = parseHttpDate(entry.lastModified ?? null);
  if (date === undefined || modified === undefined || date !== modified) return false;
  // RFC 9110 §8.8.2.2: a Last-Modified is strong only when at least a second older than the response's Date.
  const sent = parseHttpDate(entry.headers.find(([name]) => name === "date")?.[1] ?? null);
  return sent !== undefined && sent - modified >= 1_000;
}

/** The `Content-Range` value of a selection (RFC 9110 §14.4). */
export function contentRange(selection: Exclude<RangeSelection, { kind: "full" }>): string {
  return selection.kind === "partial"
    ? `bytes ${selection.start}-${selection.end}/${selection.length}`
    : `bytes */${selection.length}`;
}
