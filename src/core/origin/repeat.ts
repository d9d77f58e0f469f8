import type { OriginFetchInit } from "./origin-client.ts";

/** RFC 9110 §9.2.2: the methods a repeat of changes nothing more than the first request did. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Whether a runtime's `fetch` may ask the origin again after the connection was lost before
 * any answer (the origin closed a kept-alive connection as the request was written): an
 * idempotent request without a body to replay (RFC 9110 §9.2.2), not cancelled. When the loss
 * is such a race is the runtime's to tell (src/node/origin-fetch.ts, src/cloudflare/interim-fetch.ts).
 */
export function mayRepeat(init: OriginFetchInit): boolean {
  return (
    (init.body === null || init.body === undefined) &&
    IDEMPOTENT.has(init.method ?? "GET") &&
    init.signal?.aborted !== true
  );
}
