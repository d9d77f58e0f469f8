import type { IncomingHttpHeaders } from "node:http";
import type { HeaderReader } from "../core/http/http.ts";
import { FULL_ANSWER_FIELDS, REQUEST_DIRECTIVE_FIELDS } from "../core/http/request-directives.ts";

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

/**
 * Fields after which a request is not plain: what only the engine answers (preconditions,
 * Range, request directives a route may honour) and credentials (`decide` looks at them).
 */
export const ENGINE_FIELDS = new Set<string>([
  ...FULL_ANSWER_FIELDS,
  ...REQUEST_DIRECTIVE_FIELDS,
  "authorization",
  "cookie",
]);
const ENGINE_FIELD_LENGTHS = new Set([...ENGINE_FIELDS].map((name) => name.length));

/**
 * What one pass over a request's raw fields finds: how many Host fields and the first,
 * whether the request is plain (none of {@link ENGINE_FIELDS}), the first X-Forwarded-Proto
 * field and the Transfer-Encoding. Node's `req.headers` is built on first use, an object per
 * request; a plain request on the hit path never needs it.
 */
export interface RequestScan {
  hosts: number;
  host: string | undefined;
  plain: boolean;
  proto: string | undefined;
  /** The Transfer-Encoding fields' values, joined with ", " as Node joins them. */
  transferEncoding: string | undefined;
}

/** A {@link RequestScan} to reuse: the handler and the hit path each keep one. */
export function emptyScan(): RequestScan {
  return { hosts: 0, host: undefined, plain: true, proto: undefined, transferEncoding: undefined };
}

/** Scans `raw` (Node's `req.rawHeaders`) into `into`, which the caller reuses: nothing is allocated per request. */
export function scanFields(raw: readonly string[], into: RequestScan): RequestScan {
  into.hosts = 0;
  into.host = undefined;
  into.plain = true;
  into.proto = undefined;
  into.transferEncoding = undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4) {
      if (name === "Host" || name === "host" || name.toLowerCase() === "host") {
        into.hosts++;
        into.host ??= raw[i + 1];
      }
    } else if (name.length === 17) {
      const lower = name.toLowerCase();
      if (lower === "x-forwarded-proto") into.proto ??= raw[i + 1];
      else if (lower === "transfer-encoding")
        into.transferEncoding =
          into.transferEncoding === undefined ? raw[i + 1] : `${into.transferEncoding}, ${raw[i + 1]}`;
      // If-Modified-Since is as long: a conditional request is no plain one.
      else if (ENGINE_FIELDS.has(lower)) into.plain = false;
    } else if (into.plain && ENGINE_FIELD_LENGTHS.has(name.length) && ENGINE_FIELDS.has(name.toLowerCase())) {
      into.plain = false;
    }
  }
  return into;
}
