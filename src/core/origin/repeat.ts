import type { OriginFetchInit } from "./origin-client.ts";

/** RFC 9110 §9.2.2: the methods a repeat of changes nothing more than the first request did. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Whether a runtime's `fetch` may ask the origin again after a kept-alive connection failed
 * the request through no fault of its own (the origin closed the connection as the request was
 * written; on the Worker, bytes a previous answer left on it were read as the answer): an
 * idempotent request without a body to replay (RFC 9110 §9.2.2), not cancelled. When a failure
 * is such a one is the runtime's to tell (src/node/origin-fetch.ts, src/cloudflare/workerd-fetch.ts).
 */
export function mayRepeat(init: OriginFetchInit): boolean {
  return (
    (init.body === null || init.body === undefined) &&
    IDEMPOTENT.has(init.method ?? "GET") &&
    init.signal?.aborted !== true
  );
}
