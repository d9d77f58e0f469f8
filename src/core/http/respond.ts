import { formatCacheStatus, ttlSeconds, type CacheStatus } from "./cache-status.ts";
import { ageSeconds, staleSince, type Entry } from "./entry.ts";
import type { PassResponse } from "../fill/coordinator.ts";
import type { HeaderReader } from "./http.ts";
import type { InterimListener } from "../origin/origin-client.ts";

/** A client request as the engine sees it; adapters build it from their runtime's request. */
export interface EngineRequest {
  method: string;
  /** The URL the client asked for. */
  url: URL;
  headers: HeaderReader;
  /** Every request header as received, in order; what reaches the origin is decided by origin/forward.ts. */
  rawHeaders: [string, string][];
  /** The client's address, for X-Forwarded-For, when the runtime knows it. */
  clientAddress?: string | undefined;
  body?: ReadableStream<Uint8Array> | Uint8Array | null;
  /** A reading of `metrics.started()` when the request arrived: the answer is timed in the latency histograms. */
  receivedAt?: number | undefined;
  /**
   * Hears the origin's interim answers (`103 Early Hints`, `102`) to an origin request this
   * request causes, before its answer: a relay's, or the fill it leads. A request answered
   * from the cache, one that joined another's fill, and the refreshes behind a stale answer
   * hear none. Adapters whose client can be sent a 1xx set it.
   */
  onInterim?: InterimListener | undefined;
  /**
   * Aborts when the client hangs up before its answer is complete. A request relayed for its
   * client alone is then withdrawn from the guard's queue, or its origin call cancelled: nobody
   * is left to read the answer, and a reload storm or a client that asks and hangs up must
   * not hold the origin's permits and queue with work nobody waits for. Fills are not tied to
   * it: other clients join them, and what they store serves the next visitors.
   */
  signal?: AbortSignal | undefined;
}

/** What the engine answers; adapters write it to their socket or wrap it in a Response. */
export interface EngineResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  cacheStatus: CacheStatus;
  /** The entry the answer came from, when it came from one. */
  entry?: Entry;
}

/**
 * Serves a stored entry: its headers, then `own` (fields for this request alone, beside the
 * entry's: coordinator.ts RequesterFields), a correct Age, and Cache-Status. HEAD gets no body.
 */
export function fromEntry(
  entry: Entry,
  status: CacheStatus,
  method: string,
  now: number,
  own: readonly [string, string][] = [],
): EngineResponse {
  const cacheStatus = { ...status, ttlSeconds: ttlSeconds(staleSince(entry), now) };
  // Set-Cookie is never stored; an entry an older herdless wrote may still hold one from a 304.
  const headers: [string, string][] = entry.headers.filter(
    ([name]) => name !== "cache-status" && name !== "set-cookie",
  );
  headers.push(...own);
  headers.push(["age", String(ageSeconds(entry, now))]);
  headers.push(["cache-status", withUpstream(entry.headers, cacheStatus)]);
  withContentLength(headers, entry.status, entry.body.byteLength);
  return { status: entry.status, headers, body: method === "HEAD" ? null : entry.body, cacheStatus, entry };
}

/**
 * Serves an entry whose body is still arriving (one origin fetch shared by every waiter):
 * the headers it will be stored with, Age and Cache-Status, and Content-Length when the
 * origin declared it. HEAD gets no body; its stream is cancelled so the fetch does not wait on it.
 */
export function fromStream(
  head: Omit<Entry, "body">,
  body: ReadableStream<Uint8Array>,
  bytes: number | undefined,
  status: CacheStatus,
  method: string,
  now: number,
): EngineResponse {
  const cacheStatus = { ...status, ttlSeconds: ttlSeconds(staleSince(head), now) };
  const headers: [string, string][] = head.headers.filter(([name]) => name !== "cache-status");
  headers.push(["age", String(ageSeconds(head, now))]);
  headers.push(["cache-status", withUpstream(head.headers, cacheStatus)]);
  withContentLength(headers, head.status, bytes);
  if (method === "HEAD") void body.cancel().catch(() => undefined);
  return { status: head.status, headers, body: method === "HEAD" ? null : body, cacheStatus };
}

/**
 * Relays an origin answer that is not served from cache. Content-Length is the length of the
 * bytes in hand (a GET's, also for a HEAD answered from a GET fill), else the origin's own: a
 * relayed HEAD's says how long the representation is, not the empty body. A 304 gets none
 * ({@link withContentLength}).
 */
export function fromPass(response: PassResponse, status: CacheStatus, method: string): EngineResponse {
  const headers = response.headers.filter(([name]) => name !== "cache-status");
  // No Age of herdless's own: the origin made this answer for this request, and RFC 9111 §5.1
  // reads an Age as "not generated or validated by the origin for this request".
  headers.push(["cache-status", withUpstream(response.headers, status)]);
  const inHand = response.body instanceof Uint8Array && response.status !== 304 ? response.body.byteLength : undefined;
  withContentLength(headers, response.status, inHand ?? response.contentLength);
  // A dropped stream must still be cancelled: it holds an origin connection and permit until it ends.
  if (method === "HEAD" && response.body instanceof ReadableStream) void response.body.cancel().catch(() => undefined);
  return { status: response.status, headers, body: method === "HEAD" ? null : response.body, cacheStatus: status };
}

/** An answer herdless makes itself (503 while protecting the origin, 502 when it failed). */
export function synthetic(
  status: number,
  message: string,
  cacheStatus: CacheStatus,
  retryAfterMs?: number,
): EngineResponse {
  const body = new TextEncoder().encode(`${message}\n`);
  const headers: [string, string][] = [
    ["content-type", "text/plain; charset=utf-8"],
    // The message may quote the client's input (a Host, a request-target): never sniffed as HTML.
    ["x-content-type-options", "nosniff"],
    ["cache-control", "no-store"],
    ["content-length", String(body.byteLength)],
    ["age", "0"],
    ["cache-status", formatCacheStatus(cacheStatus)],
  ];
  if (retryAfterMs !== undefined) headers.push(["retry-after", String(Math.max(1, Math.ceil(retryAfterMs / 1000)))]);
  return { status, headers, body, cacheStatus };
}

/**
 * RFC 9110 §8.6, the one place that writes Content-Length: never on a 1xx or 204 (a server
 * MUST NOT send it there), nor on a 304, otherwise `bytes` when known before the body is sent
 * (a body of unknown length goes chunked, or until close). A 304 may carry the selected
 * representation's length (§8.6) but SHOULD NOT carry representation metadata (§15.4.5), a
 * cache below never takes it from one (RFC 9111 §3.2), and workerd drops it from a GET's 304
 * whatever the Response says: the origin's was relayed on Node only, and a 304 made from the
 * stored copy had none on either runtime. Now no 304 has one, relayed or not, on both.
 */
function withContentLength(headers: [string, string][], status: number, bytes: number | undefined): void {
  if (bytes === undefined || status < 200 || status === 204 || status === 304) return;
  headers.push(["content-length", String(bytes)]);
}

/** RFC 9211 §2: caches nearer the origin come first in the list; herdless adds itself last. */
function withUpstream(headers: [string, string][], status: CacheStatus): string {
  const upstream = headers.filter(([name]) => name === "cache-status").map(([, v]) => v);
  return [...upstream, formatCacheStatus(status)].join(", ");
}

/** Headers built once for every answer alike from one entry: until its Age, ttl or `label` (the Cache-Status's part) change. */
interface Prepared {
  age: number;
  ttl: number;
  label: string;
  headers: [string, string][];
}

/** The headers of a hit change only with Age, the remaining ttl and the detail: built once per second per entry. */
const preparedHits = new WeakMap<Entry, Prepared>();
/** Likewise for the waiters of one fetch, answered all at once from its entry. */
const preparedWaiters = new WeakMap<Entry, Prepared>();

/**
 * The headers {@link fromEntry} gives a hit at `now` (with `detail` when the copy is served
 * while its refresh runs: see fresh-hit.ts memoryAnswer), remembered per entry until Age,
 * ttl or detail change. The same array comes back meanwhile, so a runtime may derive its own
 * form from it once (Node's flat list). Callers must not modify it.
 */
export function hitHeaders(
  entry: Entry,
  now: number,
  detail: "refresh-ahead" | "stale-while-revalidate" | undefined = undefined,
): [string, string][] {
  const shown = detail ?? (entry.negative ? "negative" : undefined);
  return remembered(preparedHits, entry, shown ?? "", now, () => ({ hit: true, ...(shown ? { detail: shown } : {}) }));
}

/**
 * {@link fromEntry}'s headers for the waiters of one fetch (`status`: what the engine says
 * to a caller that joined it, engine-answer.ts filledStatus), remembered like
 * {@link hitHeaders}: at an expiry under a spike hundreds of them are answered at once from
 * the same entry, and a runtime builds their headers once. Callers must not modify it.
 */
export function waiterHeaders(entry: Entry, status: CacheStatus, now: number): [string, string][] {
  return remembered(preparedWaiters, entry, formatCacheStatus(status), now, () => status);
}

function remembered(
  slots: WeakMap<Entry, Prepared>,
  entry: Entry,
  label: string,
  now: number,
  status: () => CacheStatus,
): [string, string][] {
  const age = ageSeconds(entry, now);
  const ttl = ttlSeconds(staleSince(entry), now);
  let prepared = slots.get(entry);
  if (!prepared || prepared.age !== age || prepared.ttl !== ttl || prepared.label !== label) {
    prepared = { age, ttl, label, headers: fromEntry(entry, status(), "GET", now).headers };
    slots.set(entry, prepared);
  }
  return prepared.headers;
}
