import { clientInput, isPlainAscii, unusuallyLargeHead, type OrdinaryHeadersConfig } from "../origin/client-inputs.ts";

/** Statuses an origin gives about a request's own size or syntax, not about the resource. */
const REQUEST_FAULT_STATUSES = new Set([400, 413, 414]);

/**
 * Statuses about what a shared fill never sends (RFC 9110 §15.5): a body (411 Length
 * Required, 415 Unsupported Media Type), preconditions (412), a Range (416) or an expectation
 * (417); and 406 Not Acceptable, about this client's `Accept`, `Accept-Language` … (a Rails
 * `respond_to` without the format asked for), whichever of them the origin's `Vary` names
 * (`Vary: Accept-Encoding` from its gzip would key a refusal of `Accept` by the coding alone).
 * To a fill they are the origin answering this request's headers, never what the URL is.
 * And the four RFC 6585 says a cache MUST NOT store, each about its request or its client:
 * 428 Precondition Required, 429 Too Many Requests (that client's rate: an attacker who
 * tripped the origin's rate limit had its 429, marked `max-age` by an origin that marks
 * every answer, stored as the page for everyone), 431 Request Header Fields Too Large and
 * 511 Network Authentication Required. And 403 Forbidden and 407: a fill carries no
 * credentials (and a proxy's are never forwarded), so a refusal is of this requester: its
 * address (a WAF's ban, a country block, by the X-Forwarded-For a fill sends) or its
 * ordinary headers' values (a bot rule on `User-Agent: sqlmap`, an XSS rule on a `Referer`).
 * Stored when the origin marks every answer `max-age`, the attacker's ban was every
 * visitor's page. Varnish never stores a 403 either. And 425 Too Early (RFC 8470 §5.2): the
 * origin declining a request that may be replayed, about how it came, never about the URL.
 */
const ABOUT_THE_REQUEST = new Set([403, 406, 407, 411, 412, 415, 416, 417, 425, 428, 429, 431, 511]);

/**
 * Whether an answer may be the origin refusing or failing on this fill's own request rather
 * than describing the URL. Stored, it would be "Cache-Poisoned Denial of Service": an origin
 * that marks every answer `max-age` made the page an error for every visitor. It goes to the
 * flight's callers only, and the stored copy stays. Blamed on the request:
 * - {@link ABOUT_THE_REQUEST}: a 406 (an attacker's `Accept: application/json` to a page
 *   that knows html only), 403, 407, 411, 412, 415, 416, 417 or 425, and RFC 6585's 428,
 *   429, 431 and 511;
 * - a 400/413/414 or a 5xx to a fill that carried unusually large headers (an attacker's 10 KB
 *   header, under herdless's limit and over the origin's), unusually many (101 one-byte
 *   fields, over Apache's limit of 100 and far under Node's 2,000), or a header value with a byte
 *   outside visible ASCII, SP and HTAB (obs-text such as `é`, which Node and workerd pass on:
 *   Kestrel refuses any non-ASCII value by default; an application that cannot decode it
 *   crashes with a 500, a gateway whose upstream chokes on the size answers 502), with a copy
 *   or without: no browser sends such a request, nor the conformance suite;
 * - with a copy stored (`over` is `copy`), a 400, 413 or 414 (the origin calling the request
 *   malformed) or a 5xx (the origin failing on it), whatever the request carried: an ordinary
 *   field's value provokes them too (an `Accept-Language` the application crashes on, a WAF's
 *   400 to a `User-Agent`), and stored, the attacker's answer replaced the page for everyone;
 *   so did the refresh a stale hit starts in the background with the attacker's headers,
 *   unseen by them. The copy stays, and the next request asks again;
 * - with a copy stored, any error (4xx or 5xx) to a fill that carried an
 *   input of its client's own (clientInput: a header no ordinary visitor sends): an
 *   attacker's `X-Debug: 1` that the application chokes on replaced the page with the
 *   gateway's 503, an unknown `X-Api-Version` with the framework's 404 marked `max-age`, a
 *   wrong `X-Api-Key` with a 401, a WAF rule on a custom header with a 403. An error to such
 *   a request may be about that input, never about the URL; the next ordinary request asks
 *   again and stores what the origin says to it. Without a copy, such an error with explicit
 *   freshness is stored as the origin says (RFC 9111 §3): the conformance suite sends
 *   `Test-ID` on every request and checks that `status-400-fresh`, `status-503-fresh` … are
 *   reused.
 * On a key with no copy, a 400 or a 5xx to an ordinary request is still stored when its
 * freshness is explicit (Varnish never stores a 400), for the same suite's sake, but
 * unconfirmed (asked-by.ts, fill/blame.ts unlessConfirmed): it answers only requests like its
 * own until a different request gets an error of its class.
 */
export function blamesTheRequest(
  status: number,
  headers: readonly (readonly [string, string])[],
  over: ErrorOver,
  config?: OrdinaryHeadersConfig,
): boolean {
  if (ABOUT_THE_REQUEST.has(status)) return true;
  const fault = REQUEST_FAULT_STATUSES.has(status);
  const unusual = headers.some(([, value]) => !isPlainAscii(value)) || unusuallyLargeHead(headers);
  if ((fault || status >= 500) && unusual) return true;
  if (over === "copy" && (fault || status >= 500)) return true;
  return over !== undefined && status >= 400 && clientInput(headers, config) !== undefined;
}

/**
 * What an error to a fill would be stored over: a copy of the URL (this variant's or another's),
 * nothing that lasts (an error fresh for no time), or neither (a cold key).
 */
export type ErrorOver = "copy" | "fleeting" | undefined;
