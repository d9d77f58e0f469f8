import { memoryAnswer, type UrlTarget } from "../core/http/fresh-hit.ts";
import { hitHeaders } from "../core/http/respond.ts";
import type { ReadyIsolate } from "./isolate.ts";

/**
 * A hit in the isolate's memory, answered with no engine, store or RPC built for the
 * request: the same decision as the engine's (core/fresh-hit.ts memoryAnswer) and the same
 * bytes (`fromEntry`). That includes a copy served while this isolate already refreshes it
 * (stale-while-revalidate, refresh-ahead): at an expiry under a spike, the first request
 * starts the one refresh through the engine and the others are answered here. Anything else,
 * or a purge list past its bound, goes the full way.
 */
export function memoryHit(
  isolate: ReadyIsolate,
  request: Request,
  target: UrlTarget,
  cacheName: string,
  background: (work: Promise<unknown>) => void,
): Response | undefined {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  const purges = isolate.purges.fresh(background);
  if (!purges) return undefined;
  const { route, primary } = target;
  const headers = request.headers;
  const facts = {
    method: request.method,
    hasAuthorization: headers.has("authorization"),
    hasCookie: headers.has("cookie"),
  };
  const now = isolate.clock.now();
  const answer = memoryAnswer(
    isolate.memoryFor(cacheName),
    route,
    primary,
    facts,
    headers,
    purges,
    now,
    isolate.refreshMarksFor(cacheName),
  );
  if (!answer) return undefined;
  const { entry, detail } = answer;
  isolate.metrics.count(entry.negative ? "negative" : detail === "stale-while-revalidate" ? "stale" : "hit", primary);
  return new Response(request.method === "HEAD" ? null : entry.body, {
    status: entry.status,
    headers: headersObject(hitHeaders(entry, now, detail)),
  });
}

/**
 * The Headers of each prepared hit (hitHeaders answers the same array while the entry's Age
 * and TTL stay the same, so a second at most). workerd converts an array of pairs field by
 * field on every `new Response` (~20 µs for a dozen fields, most of a hit's own CPU) and
 * copies a Headers object natively (~1 µs); the Response gets its own copy either way, so
 * what a caller does to one hit's headers never reaches the next.
 */
const asHeaders = new WeakMap<readonly (readonly [string, string])[], Headers>();

function headersObject(pairs: [string, string][]): Headers {
  let headers = asHeaders.get(pairs);
  if (headers === undefined) asHeaders.set(pairs, (headers = new Headers(pairs)));
  return headers;
}
