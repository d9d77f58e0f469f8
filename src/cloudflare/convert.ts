import type { EngineRequest } from "../core/engine.ts";
import { canonicalUrl } from "../core/http/canonical-url.ts";
import { joinedCookieFields } from "../core/http/cookies.ts";
import type { EngineResponse } from "../core/http/respond.ts";

/** Between the Workers' Request/Response and the engine's plain request and answer. */
export function toEngineRequest(request: Request): EngineRequest {
  return {
    method: request.method,
    // The spelling it is keyed and fetched by (canonical-url.ts), as the edge's hit path reads it.
    url: canonicalUrl(new URL(request.url)),
    headers: request.headers,
    rawHeaders: requestFields(request.headers),
    body: request.body,
    // Set by Cloudflare's edge to the address of the client that connected to it.
    clientAddress: request.headers.get("cf-connecting-ip") ?? undefined,
    // Aborts when the client disconnects (the enable_request_signal compatibility flag).
    signal: request.signal,
  };
}

/**
 * A request's fields as the engine reads them (its `rawHeaders`): workerd's `Headers` list,
 * with the Cookie fields it joined with `, ` told apart again ({@link joinedCookieFields}), so
 * that they reach the origin as one field joined with `; ` (forward.ts). Sent joined with `, `,
 * an origin's cookie parser read a second field's cookies as part of the first one's value
 * (`sessionid=alice, csrftoken=t0k`).
 */
export function requestFields(headers: Headers): [string, string][] {
  const fields: [string, string][] = [];
  for (const [name, value] of headers) {
    if (name !== "cookie") fields.push([name, value]);
    else for (const field of joinedCookieFields(value)) fields.push([name, field]);
  }
  return fields;
}

/** Statuses whose Response must not carry a body (the constructor throws otherwise). */
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

export function toResponse(res: EngineResponse): Response {
  // The header list goes to the constructor as it is: one copy, not an append per header.
  const headers = withDate(res.headers);
  if (NULL_BODY_STATUS.has(res.status)) {
    if (res.body instanceof ReadableStream) void res.body.cancel().catch(() => undefined);
    return new Response(null, { status: res.status, headers });
  }
  return new Response(withKnownLength(res.body, headers), { status: res.status, headers });
}

/**
 * A streamed body whose length the answer states (respond.ts writes Content-Length only for
 * bytes the client gets as counted: a stored entry's, an origin's declared length of a body
 * that was not decoded, a range's), as a stream workerd knows the length of. workerd sends a
 * stream of unknown length chunked, dropping the Content-Length given with it, and ends it
 * with the last chunk even when the stream errors (workerd#6818): an origin body cut off
 * mid-way reached every client of its fetch as a complete `200`, which a browser or a cache
 * in front could keep. Through a FixedLengthStream the length goes out, and a body that ends
 * short or errors leaves the client fewer bytes than promised on a closed connection.
 */
function withKnownLength(body: EngineResponse["body"], headers: [string, string][]): EngineResponse["body"] {
  if (!(body instanceof ReadableStream)) return body;
  const length = headers.find(([name]) => name === "content-length")?.[1];
  if (length === undefined) return body;
  return throughFixedLength(body, Number(length));
}

/**
 * `body` as a stream workerd knows the length of, `length` bytes, so it goes out with its
 * Content-Length rather than chunked. Errors and cancels pass through: the source's error
 * aborts the message it is the body of (a client's answer, an origin's request), and a reader
 * that goes away cancels the source.
 */
export function throughFixedLength(body: ReadableStream<Uint8Array>, length: number): ReadableStream<Uint8Array> {
  const { readable, writable } = new FixedLengthStream(length);
  void body.pipeTo(writable).catch(() => undefined);
  return readable;
}

/**
 * RFC 9110 §6.6.1: every answer carries a Date. An origin's answer has its own (fetchOrigin
 * adds the arrival time where the origin sent none); herdless's own answers (405, 412, 416,
 * 502-504) get the time they are sent, as Node's server stamps them. workerd adds none.
 */
function withDate(headers: [string, string][]): [string, string][] {
  return headers.some(([name]) => name === "date") ? headers : [...headers, ["date", new Date().toUTCString()]];
}
