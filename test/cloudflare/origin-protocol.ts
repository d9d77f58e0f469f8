/**
 * Wire protocol of the counting test origin (vitest.workers.setup.ts runs it in Node;
 * test/cloudflare/test-origin.ts drives it from inside workerd). Runtime-free: types only.
 */

/** How a namespace of the test origin answers. */
export interface OriginBehaviour {
  status: number;
  headers: Record<string, string>;
  /** Response body; by default `<path> #<n>` where n counts requests in the namespace. */
  body?: string;
  /** Response body as bytes (base64), e.g. a gzip-encoded one; wins over `body`. */
  bodyBase64?: string;
  /** A generated body of this many bytes (byte i is `largeBodyByte(i)`); wins over `body` and `bodyBase64`. */
  bodyBytes?: number;
  /** Wait this long (real time) before answering. */
  delayMs: number;
  /**
   * up: answer; down: reset the connection (the fetch fails); hold: wait until the test
   * calls release(); truncate: promise a longer body than is sent, then reset; half: send
   * the head and the first half of the body, then wait (counted as held) until release();
   * stream: as half, without a Content-Length (chunked, as an event stream is sent); cut: as
   * half, then at release the connection is reset instead of the rest sent (an origin that
   * dies mid-body, after a pause long enough that herdless streams what came); sink: read the
   * request's body and note what arrived (OriginRequestRecord `received`), then answer.
   */
  mode: "up" | "down" | "hold" | "truncate" | "half" | "stream" | "cut" | "sink";
  /** When set, a request whose If-None-Match equals it gets 304. */
  etag?: string;
  /** Extra headers on that 304 (what a revalidation adds to the stored response). */
  notModifiedHeaders?: Record<string, string>;
  /**
   * Header lines written to the socket as they are (`"X Bad: 1\r\n"`), after the others:
   * for fields Node's own writer refuses to send. The connection closes after the answer.
   */
  rawHeaderLines?: string;
  /**
   * When true, a request's `Origin` is granted CORS by reflecting it (`Access-Control-Allow-Origin`
   * and `-Credentials: true`), without `Vary: Origin`, as a hand-written nginx config does.
   */
  reflectOrigin?: boolean;
  /** When true, the request's whole body is read before the answer, as a form handler does. */
  readBody?: boolean;
  /** When true, a `103 Early Hints` interim response precedes the answer. */
  earlyHints?: boolean;
  /**
   * When true, a request with a header value outside visible ASCII, SP and HTAB is answered
   * `status` 400 with the configured headers, as Kestrel refuses one.
   */
  refuseNonAscii?: boolean;
  /**
   * Overrides for a request that carries the named header (lowercase): an application that
   * fails on an input the cache key ignores (`{ "x-debug": { status: 503 } }`); a `name: value`
   * key, for a request carrying that value exactly (`{ "accept-language: xx": { status: 500 } }`).
   */
  byHeader?: Record<string, Partial<OriginBehaviour>>;
}

/** A change to the behaviour; `paths` overrides apply to one pathname (query ignored). */
export type OriginBehaviourPatch = Partial<OriginBehaviour> & { paths?: Record<string, Partial<OriginBehaviour>> };

export interface OriginRequestRecord {
  method: string;
  /** Path and query below the namespace prefix, e.g. `/page?x=1`. */
  path: string;
  /** Request headers, names lowercased. */
  headers: Record<string, string>;
  /**
   * What arrived of the request's body (mode sink), as it arrives: its bytes, and whether the
   * message ended as its framing says one ends (all of its Content-Length, or the last chunk).
   */
  received?: { bytes: number; complete: boolean };
}

export interface OriginStats {
  /** Requests that reached the origin, ever (since reset). */
  count: number;
  /** Requests received and not yet answered or dropped. */
  inFlight: number;
  /** The highest inFlight seen. */
  maxInFlight: number;
  /** Requests whose client went away before the answer was complete (aborts, timeouts). */
  aborted: number;
  /** Requests parked by `mode: "hold"`. */
  held: number;
  requests: OriginRequestRecord[];
}

/** Condition for the long-poll `wait` endpoint: every given field must be reached (≥). */
export interface OriginWaitCondition {
  count?: number;
  inFlight?: number;
  held?: number;
}

/** Name under which the global setup provides the origin's base URL (`inject(...)`). */
export const TEST_ORIGIN_KEY = "herdlessTestOrigin";

/** Name under which the global setup provides the base URL of its origin that closes kept-alive connections under a request. */
export const STALE_ORIGIN_KEY = "herdlessStaleOrigin";

/** Name under which the global setup provides the base URL of its origin that ends answers with a trailer section. */
export const TRAILER_ORIGIN_KEY = "herdlessTrailerOrigin";

/** Byte `i` of a generated body (`bodyBytes`): varies with the offset, so a misplaced chunk shows. */
export function largeBodyByte(i: number): number {
  return (i * 31 + (i >>> 13)) & 0xff;
}
