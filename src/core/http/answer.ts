import type { CacheStatus } from "./cache-status.ts";
import { evaluatePreconditions, keptInNotModified } from "./conditional.ts";
import type { Entry, Representation } from "./entry.ts";
import { headerList, type HeaderReader } from "./http.ts";
import { contentRange, selectRange } from "./range.ts";
import { fromEntry, synthetic, type EngineResponse } from "./respond.ts";
import { streamPart } from "./stream-part.ts";
import { needsFullAnswer } from "./request-directives.ts";

/** The parts of a client request that shape an answer from a stored entry. */
export interface ClientAsk {
  method: string;
  headers: HeaderReader;
}

/**
 * Answers a client from a stored entry the engine decided to serve: a 304 when its
 * If-None-Match / If-Modified-Since say the client already has it (RFC 9111 §4.3.2), a 412
 * when its If-Match / If-Unmodified-Since fail against it (RFC 9110 §13.2.2), a 206 or 416
 * for a Range (RFC 9110 §14), else the entry itself ({@link fromEntry}). Cache-Status and
 * Age are those the full answer would carry. `own`: the fields only this request is given
 * beside the entry's (coordinator.ts RequesterFields).
 *
 * @example
 * return answerFromEntry(entry, { hit: true }, { method: "GET", headers: request.headers }, clock.now());
 */
export function answerFromEntry(
  entry: Entry,
  status: CacheStatus,
  ask: ClientAsk,
  now: number,
  own: readonly [string, string][] = [],
): EngineResponse {
  const full = fromEntry(entry, status, ask.method, now, own);
  const decided = preconditionAnswer(entry, full, ask);
  if (decided) return decided;
  const length = entry.body.byteLength;
  return rangeAnswer(entry, length, full, ask, (start, end) => entry.body.subarray(start, end + 1)) ?? full;
}

/**
 * The 206 or 416 a client's Range makes of `full`, the answer `entry` would give, whose body is
 * `length` bytes (RFC 9110 §14); undefined when the whole is sent. `part` gives the bytes of
 * the range: from the stored body, or cut from one still arriving.
 */
export function rangeAnswer(
  entry: Representation,
  length: number,
  full: EngineResponse,
  ask: ClientAsk,
  part: (start: number, end: number) => Uint8Array | ReadableStream<Uint8Array>,
): EngineResponse | undefined {
  const range = selectRange(entry, ask.headers, ask.method, length);
  if (range.kind === "full") return undefined;
  if (range.kind === "unsatisfiable") {
    const refused = synthetic(416, "range not satisfiable", full.cacheStatus);
    refused.headers.push(["content-range", contentRange(range)]);
    return refused;
  }
  // The stored response's own framing never describes the part (an origin may send a stray
  // Content-Range on a 200): one Content-Range, ours, so no client reads a part as the whole.
  const headers = full.headers.filter(([name]) => name !== "content-length" && name !== "content-range");
  headers.push(["content-range", contentRange(range)]);
  headers.push(["content-length", String(range.end - range.start + 1)]);
  return { ...full, status: 206, headers, body: part(range.start, range.end) };
}

/**
 * The 304 or 412 a client's preconditions make of `full`, the answer `entry` would give (RFC
 * 9111 §4.3.2, RFC 9110 §13.2.2); undefined when they hold and `full` is served. Only the
 * entry's head is read: it also judges an entry whose body is still arriving.
 *
 * @example
 * const decided = preconditionAnswer(head, fromStream(head, body, bytes, status, method, now), ask);
 */
export function preconditionAnswer(
  entry: Representation,
  full: EngineResponse,
  ask: ClientAsk,
): EngineResponse | undefined {
  switch (evaluatePreconditions(entry, ask.headers, ask.method)) {
    case "not-modified":
      return {
        ...full,
        status: 304,
        // RFC 9110 §15.4.5: the 200's fields but its representation metadata, and no body.
        headers: full.headers.filter(([name]) => keptInNotModified(name)),
        body: null,
      };
    case "failed":
      return synthetic(412, "precondition failed", full.cacheStatus);
    case "proceed":
      return undefined;
  }
}

/**
 * A client's answer from the origin's answer to a fill that could not be shared (`full`, as
 * fromPass makes it: `private`, `no-store`, no lifetime). The fill asked for the whole,
 * unconditional response (forward.ts), so herdless answers the client's preconditions and
 * Range itself, as from a stored copy: a 304 or 412, then the 206 or 416 {@link wholeRange}
 * cuts. Sent whole, every seek in a `no-store` or `private` video got a 200 of the whole file,
 * which a media player cannot seek in (Safari plays none). `now`: when it arrived.
 *
 * @example
 * return answerFromPass(fromPass(response, status, request.method), ask(request), clock.now());
 */
export function answerFromPass(full: EngineResponse, ask: ClientAsk, now: number): EngineResponse {
  // Most clients send neither: their answer is the origin's, with nothing read or built.
  if (!needsFullAnswer(ask.headers, false)) return full;
  const fields = headerList(full.headers);
  const head = passHead(full, fields, now);
  const decided = preconditionAnswer(head, full, ask);
  if (!decided) return cutRange(full, fields, head, ask);
  discard(full.body);
  if (decided.status !== 304) return decided;
  // Made for this client alone: its Set-Cookie is this client's, with a 304 as with the 200.
  return { ...decided, headers: [...decided.headers, ...full.headers.filter(([name]) => name === "set-cookie")] };
}

/**
 * The 206 or 416 a client's Range makes of `full`, a whole 200 relayed from the origin (RFC
 * 9110 §14), cut from its body as it arrives; `full` itself when there is no range to cut:
 * no valid single Range, another status, a length the client is not told (a body of unknown
 * length, or one the runtime decoded), or a Content-Range on the 200 (a part sent as the whole).
 */
export function wholeRange(full: EngineResponse, ask: ClientAsk, now: number): EngineResponse {
  if (ask.headers.get("range") === null) return full;
  const fields = headerList(full.headers);
  return cutRange(full, fields, passHead(full, fields, now), ask);
}

/** {@link wholeRange} with the answer's fields and head already read. */
function cutRange(full: EngineResponse, fields: HeaderReader, head: Representation, ask: ClientAsk): EngineResponse {
  const { body } = full;
  const length = fields.get("content-length");
  if (body === null || length === null || !/^\d+$/.test(length) || fields.get("content-range") !== null) return full;
  const part = rangeAnswer(head, Number(length), full, ask, (start, end) =>
    body instanceof Uint8Array ? body.subarray(start, end + 1) : streamPart(body, start, end),
  );
  // A 416 takes none of the body: let go of it (its origin call ends).
  if (part?.status === 416) discard(body);
  return part ?? full;
}

/** A relayed answer's head, as preconditions and Range read it. */
function passHead(full: EngineResponse, fields: HeaderReader, now: number): Representation {
  return {
    status: full.status,
    headers: full.headers,
    etag: fields.get("etag") ?? undefined,
    lastModified: fields.get("last-modified") ?? undefined,
    storedAt: now,
    negative: false,
  };
}

/** A body no client will read: a stream is cancelled, so its origin call ends. */
function discard(body: EngineResponse["body"]): void {
  if (body instanceof ReadableStream) void body.cancel().catch(() => undefined);
}

/** The 504 of RFC 9111 §5.2.1.7: `only-if-cached` and nothing servable is stored. */
export function notCached(status: CacheStatus): EngineResponse {
  return synthetic(504, "only-if-cached: no stored response can answer this request", status);
}
