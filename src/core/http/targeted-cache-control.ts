/**
 * The fields that give this cache its own directives, ahead of Cache-Control:
 * CDN-Cache-Control (RFC 9213) and Surrogate-Control (W3C Edge Architecture 1.0).
 * CDN-Cache-Control is, unlike Cache-Control, a strict RFC 8941 Dictionary (RFC 9213 §2.1),
 * so it goes through the `structured-headers` parser.
 */
import { parseDictionary, Token, type BareItem, type InnerList, type Item } from "structured-headers";
import { FRESHNESS_DIRECTIVES, parseCacheControl, type Directives } from "./cache-control.ts";

/**
 * Parses a CDN-Cache-Control field value (RFC 9213 §2.1): an RFC 8941 Dictionary whose
 * members mean what the Cache-Control directives of the same name mean. Undefined when the
 * field is absent, empty or invalid, so that the caller falls back to Cache-Control
 * (RFC 9213 §2.2: the first field "with a valid, non-empty value" governs). Invalid covers
 * a failed structured parse (`max-age =100`, `&&&`, upper-case keys) and, per §2.1's
 * "SHOULD NOT consume values that violate these inferred constraints", a known directive
 * with a value of the wrong type (`max-age="10000"`, `max-age=1.5`, `max-age=-1`):
 * consuming half of a field would be worse than ignoring it.
 *
 * @example
 * parseTargetedCacheControl("max-age=600, stale-if-error=60")?.get("max-age"); // "600"
 * parseTargetedCacheControl('max-age="600"'); // undefined
 */
export function parseTargetedCacheControl(value: string | null | undefined): Directives | undefined {
  if (!value || value.trim() === "") return undefined;
  let dictionary: Map<string, Item | InnerList>;
  try {
    dictionary = parseDictionary(value);
  } catch {
    return undefined;
  }
  const directives = new Map<string, string | true>();
  for (const [name, [member]] of dictionary) {
    if (!fitsDirective(name, member)) return undefined;
    const converted = Array.isArray(member) ? innerListValue(member) : bareValue(member);
    if (converted === undefined) return undefined;
    if (converted !== false) directives.set(name, converted);
  }
  return directives.size === 0 ? undefined : directives;
}

/**
 * The device token herdless answers to in `Surrogate-Control` and announces in
 * `Surrogate-Capability` (W3C Edge Architecture Specification 1.0, §2.2, §3).
 */
export const SURROGATE_DEVICE_TOKEN = "herdless";

/**
 * Surrogate-Control directives that ask a surrogate to process the body (W3C Edge Architecture
 * 1.0 §3.1 `content="ESI/1.0"`), not how to cache it: alone they never make the field govern.
 */
const PROCESSING_DIRECTIVES = ["content"];

/**
 * Parses a Surrogate-Control field value (W3C Edge Architecture 1.0 §3): Cache-Control list
 * syntax whose directives may be targeted at one surrogate by a `;device-token` suffix.
 * Untargeted directives and those targeted at {@link SURROGATE_DEVICE_TOKEN} are kept, the
 * rest belong to other surrogates. Undefined when nothing applies to herdless (absent, empty
 * or all malformed), so that the caller falls back to Cache-Control, as for CDN-Cache-Control.
 * So is a field that only asks for processing (`content="ESI/1.0"`, which Symfony adds to
 * every page rendered with ESI tags): governing, it made herdless ignore the page's
 * `Cache-Control: private` or `no-store`, and store and share it.
 *
 * @example
 * parseSurrogateControl("max-age=600;herdless, no-store;other")?.get("max-age"); // "600"
 * parseSurrogateControl("max-age=600;other"); // undefined
 * parseSurrogateControl('content="ESI/1.0"'); // undefined: Cache-Control governs
 */
export function parseSurrogateControl(value: string | null | undefined): Directives | undefined {
  if (!value || value.trim() === "") return undefined;
  const kept: string[] = [];
  for (const element of splitOutsideQuotes(value, ",")) {
    const [directive = "", target] = splitOutsideQuotes(element, ";");
    if (target !== undefined && target.trim().toLowerCase() !== SURROGATE_DEVICE_TOKEN) continue;
    kept.push(directive);
  }
  const directives = parseCacheControl(kept.join(","));
  for (const name of directives.keys()) if (!PROCESSING_DIRECTIVES.includes(name)) return directives;
  return undefined;
}

/** Splits on `separator` where it is not inside a quoted string (RFC 9110 §5.6.4). */
function splitOutsideQuotes(value: string, separator: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted && c === "\\" && i + 1 < value.length) {
      current += c + value[++i]!;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === separator && !quoted) {
      parts.push(current);
      current = "";
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** A member's value as Cache-Control would carry it: digits, text, bare (true) or `?0` (false). */
function bareValue(item: BareItem): string | boolean | undefined {
  if (typeof item === "boolean") return item;
  if (typeof item === "string") return item;
  if (item instanceof Token) return item.toString();
  if (typeof item === "number" && Number.isInteger(item)) return item < 0 ? undefined : String(item);
  return undefined; // Decimal, Byte Sequence, Date, Display String: no directive takes one.
}

/** `no-cache=("a" "b")`: the structured spelling of a field-name list. */
function innerListValue(items: Item[]): string | undefined {
  const names: string[] = [];
  for (const [item] of items) {
    if (typeof item === "string") names.push(item);
    else if (item instanceof Token) names.push(item.toString());
    else return undefined;
  }
  return names.join(", ");
}

/** RFC 9213 §2.1 inferred constraint: delta-seconds directives are non-negative Integers. */
function fitsDirective(name: string, member: BareItem | Item[]): boolean {
  if (!FRESHNESS_DIRECTIVES.has(name)) return true;
  return typeof member === "number" && Number.isInteger(member) && member >= 0;
}
