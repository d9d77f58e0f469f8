import type { EngineRequest } from "../core/engine.ts";
import type { EngineResponse } from "../core/http/respond.ts";

/** Between the Workers' Request/Response and the engine's plain request and answer. */
export function toEngineRequest(request: Request): EngineRequest {
  return {
    method: request.method,
    url: new URL(request.url),
    headers: request.headers,
    rawHeaders: [...request.headers],
    body: request.body,
    // Set by Cloudflare's edge to the address of the client that connected to it.
    clientAddress: request.headers.get("cf-connecting-ip") ?? undefined,
    // Aborts when the client disconnects (the enable_request_signal compatibility flag).
    signal: request.signal,
  };
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
  return new Response(res.body, { status: res.status, headers });
}

/**
 * RFC 9110 §6.6.1: every answer carries a Date. An origin's answer has its own (fetchOrigin
 * adds the arrival time where the origin sent none); herdless's own answers (405, 412, 416,
 * 502-504) get the time they are sent, as Node's server stamps them. workerd adds none.
 */
function withDate(headers: [string, string][]): [string, string][] {
  return headers.some(([name]) => name === "date") ? headers : [...headers, ["date", new Date().toUTCString()]];
}
