import type { IncomingHttpHeaders } from "node:http";
import type { HeaderReader } from "../core/http/http.ts";

/**
 * Fields node:http keeps the first of, dropping the others from `req.headers`
 * (IncomingMessage's `matchKnownFields`). Read from the raw list instead when repeated: RFC
 * 9110 §13.1.3 and §13.1.4 ask a recipient to ignore an `If-Modified-Since` or
 * `If-Unmodified-Since` of more than one member, which two such fields are; with the first
 * only, Node's server answered a `304` or a `412` the Worker (which joins them) did not.
 */
const FIRST_KEPT = new Set([
  "age",
  "authorization",
  "content-length",
  "content-type",
  "etag",
  "expires",
  "from",
  "host",
  "if-modified-since",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "referer",
  "retry-after",
  "server",
  "user-agent",
]);

/**
 * Node's parsed request headers as a {@link HeaderReader}; repeated fields joined with ", ",
 * those Node keeps one of ({@link FIRST_KEPT}) too, from `raw` (Node's `req.rawHeaders`).
 */
export function headerReader(headers: IncomingHttpHeaders, raw: readonly string[]): HeaderReader {
  return {
    get(name: string): string | null {
      const value = headers[name];
      if (value === undefined) return null;
      if (Array.isArray(value)) return value.join(", ");
      return FIRST_KEPT.has(name) ? allOf(raw, name, value) : value;
    },
  };
}

/** Every value of `name` (lowercase) in `raw`, joined with ", "; `first` when it occurs once. */
function allOf(raw: readonly string[], name: string, first: string): string {
  let joined: string | undefined;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== name.length || raw[i]!.toLowerCase() !== name) continue;
    joined = count++ === 0 ? raw[i + 1]! : `${joined}, ${raw[i + 1]}`;
  }
  return count > 1 ? joined! : first;
}

/** Node's raw header list (name, value, name, value …) as pairs with lowercased names. */
export function lowercased(raw: readonly string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return pairs;
}
