import { headerList, HOP_BY_HOP } from "../http/http.ts";

/**
 * Which Content-Encoding values a runtime's `fetch` removes before handing out the body
 * (RFC 9110 §8.4; the Fetch Standard leaves the set to the implementation). Given the
 * field value as received.
 */
export type ContentDecoding = (contentEncoding: string) => boolean;

const UNDICI_DECODED: ReadonlySet<string> = new Set(["gzip", "x-gzip", "deflate", "br"]);

/**
 * undici's rule (Node's `fetch`): a list made only of gzip, x-gzip, deflate and br, in any
 * case, arrives decoded; one other coding anywhere in the list and nothing is decoded.
 *
 * @example
 * fetchStandardDecoding("gzip, br"); // true
 * fetchStandardDecoding("gzip, identity"); // false
 */
export const fetchStandardDecoding: ContentDecoding = (contentEncoding) => {
  const codings = contentEncoding
    .split(",")
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== "");
  return codings.length > 0 && codings.every((coding) => UNDICI_DECODED.has(coding));
};

/**
 * Was the body read through `fetch` decoded from its Content-Encoding? Decides whether the
 * label stays: a body is never labelled with a coding it does not have, and never loses the
 * label of one it has.
 *
 * @example
 * bodyWasDecoded("gzip", fetchStandardDecoding); // true: fetch gunzipped it
 * bodyWasDecoded("x-custom", fetchStandardDecoding); // false: the bytes are as the origin sent them
 */
export function bodyWasDecoded(contentEncoding: string | null, decodes: ContentDecoding): boolean {
  return contentEncoding !== null && decodes(contentEncoding);
}

/** RFC 9110 §5.1 field-name = token (§5.6.2 tchar). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * RFC 9110 §5.5 field-value: visible characters, SP, HTAB and obs-text; never CR, LF, NUL or
 * other controls. obs-text is any character past U+007F: Node reads a field's bytes as latin1
 * (one character per byte), but workerd reads them as UTF-8, so a UTF-8 value (a download's
 * `filename="日本.pdf"`, a `Location` to `/日本`) reaches the Worker with characters past
 * U+00FF, and workerd writes them back as the origin's bytes. Refused, such a field was
 * dropped: the download opened in the browser under another name, the redirect went nowhere.
 * U+FFFD is what workerd makes of bytes that are not UTF-8 (a latin1 `é`): such a value goes,
 * as herdless never sends bytes the origin did not (two entity-tags would read alike).
 */
function isValidValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c === 0xfffd) return false;
  }
  return true;
}

/**
 * RFC 9110 §5.1 and §5.5: a field a proxy may store and relay. A name that is not a token
 * (`X Bad`) makes every runtime's header writer throw, and a control character in a value
 * splits or corrupts the response a client sees, so such fields are dropped on arrival.
 *
 * @example
 * isValidField("x-a", "1"); // true
 * isValidField("x bad", "1"); // false
 */
export function isValidField(name: string, value: string): boolean {
  return FIELD_NAME.test(name) && isValidValue(value);
}

/**
 * Fields about the bytes as the origin sent them, which a body the runtime's fetch decoded no
 * longer has: its integrity checksums (RFC 9530 Content-Digest and Repr-Digest, the obsolete
 * Digest and Content-MD5) would fail on the decoded bytes.
 */
const CODED_BYTES_FIELDS: ReadonlySet<string> = new Set(["content-digest", "repr-digest", "digest", "content-md5"]);

/**
 * RFC 9110 §8.8.3: a strong entity-tag names one representation's exact bytes; the decoded
 * body is another representation, so its tag is weak (as nginx's gzip and gunzip make it):
 * an `If-Range` with the coded bytes' tag (a download resumed with bytes fetched elsewhere)
 * never gets a range of the decoded ones, while `If-None-Match` still matches (weakly).
 */
function decodedTag(etag: string): string {
  const tag = etag.trim();
  return tag.startsWith('"') ? `W/${tag}` : etag;
}

/**
 * Headers worth keeping: hop-by-hop ones and those named in Connection go (RFC 9110
 * §7.6.1), and malformed ones ({@link isValidField}, reported in `dropped`); Content-Length
 * goes because the length is recomputed on the way out, Content-Encoding only when the
 * runtime's fetch decoded the body ({@link bodyWasDecoded}), and then the fields about the
 * coded bytes go too ({@link CODED_BYTES_FIELDS}) and a strong ETag is weakened
 * ({@link decodedTag}). workerd decodes whatever `Cache-Control: no-transform` says: the
 * runtime's fetch leaves herdless no coded bytes to keep.
 *
 * An end-to-end field the origin names in Connection (`Connection: Vary`) is reported in
 * `dropped` too: it was meant for this hop, herdless never passes it on, and storage must not
 * judge the response as if the origin had not sent it. Unheard, a `Vary: X-Lang` made the
 * first visitor's language every visitor's page, and a `Cache-Control: private` let a route's
 * `defaultTtlMs` share the owner's page; storage refuses a response missing such a field
 * (storability.ts `hasMalformedStorageField`), and the requester alone gets it.
 */
export function responseHeaders(
  headers: Headers,
  decodes: ContentDecoding = fetchStandardDecoding,
): { headers: [string, string][]; dropped: string[] } {
  const decoded = bodyWasDecoded(headers.get("content-encoding"), decodes);
  const connectionListed = new Set(
    (headers.get("connection") ?? "")
      .split(",")
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: [string, string][] = [];
  const dropped: string[] = [];
  const keep = (name: string, value: string) => {
    if (isValidField(name, value)) out.push([name, value]);
    else dropped.push(name);
  };
  headers.forEach((value, name) => {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === "content-length" || (lower === "content-encoding" && decoded)) return;
    if (connectionListed.has(lower)) {
      dropped.push(lower);
      return;
    }
    if (lower === "set-cookie") return; // combined by Headers; each one kept below
    if (decoded && CODED_BYTES_FIELDS.has(lower)) return;
    keep(lower, decoded && lower === "etag" ? decodedTag(value) : value);
  });
  const cookies = typeof headers.getSetCookie === "function" ? headers.getSetCookie() : [];
  for (const cookie of cookies) keep("set-cookie", cookie);
  return { headers: out, dropped };
}

/**
 * Whether an origin body goes to its callers from its head on instead of being read whole
 * first (up to `keep` bytes). Nothing to keep (relays), or more declared than is kept: rather
 * than wait for a first byte to overflow. A server-sent event stream (WHATWG HTML §9.2,
 * `text/event-stream`) too: a live feed written event by event for as long as a page is open,
 * which read ahead to be kept whole gave its client nothing until `origin.timeoutMs`, then a
 * 504 the breaker counted as a timeout.
 */
export function streamsAtOnce(headers: Headers, declared: number | undefined, keep: number): boolean {
  return keep === 0 || (declared !== undefined && declared > keep) || isEventStream(headers.get("content-type"));
}

/** Whether a `Content-Type` names a server-sent event stream: a live feed, open as long as its page is. */
export function isEventStream(contentType: string | null): boolean {
  return contentType !== null && contentType.split(";", 1)[0]!.trim().toLowerCase() === "text/event-stream";
}

/** What a streamed answer tells the body's holder (held-body.ts): its declared length, and whether it is a live event stream. */
export function heldShape(response: { declaredBytes?: number; headers: [string, string][] }): {
  declaredBytes: number | undefined;
  live: boolean;
} {
  return {
    declaredBytes: response.declaredBytes,
    live: isEventStream(headerList(response.headers).get("content-type")),
  };
}
